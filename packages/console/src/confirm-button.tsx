import { useState } from 'preact/hooks';

/**
 * A destructive button asked twice: the first press turns it into its confirmation (the
 * same element, so the keyboard's focus stays on it), the second does it; Escape or
 * leaving it (blur) takes the question back.
 */
export function ConfirmButton(props: {
  /** What it says first, e.g. "Remove". */
  label: string;
  /** Its accessible name first, e.g. "Remove web". */
  name: string;
  /** What it says (and is named) when it asks, e.g. "Confirm remove web". */
  confirmLabel: string;
  disabled?: boolean;
  onConfirm: () => void;
}) {
  const [asking, setAsking] = useState(false);
  return (
    <button
      type="button"
      class={asking ? 'danger' : undefined}
      disabled={props.disabled}
      aria-label={asking ? props.confirmLabel : props.name}
      onClick={() => {
        if (!asking) return setAsking(true);
        setAsking(false);
        props.onConfirm();
      }}
      onKeyDown={(e) => {
        if (e.key === 'Escape') setAsking(false);
      }}
      onBlur={() => setAsking(false)}
    >
      {asking ? props.confirmLabel : props.label}
    </button>
  );
}
