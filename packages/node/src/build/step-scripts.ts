// What the steps that change files run as root in the build sandbox. Plain POSIX sh and
// coreutils/tar, with E2B's semantics for each; arguments come as positional parameters,
// never spliced into the script.

/** The home directory of `$1` from /etc/passwd (getent is not in every image). */
const HOME_OF = `home_of() { awk -F: -v u="$1" '$1 == u { print $6; exit }' /etc/passwd 2>/dev/null; }`;

/**
 * COPY: $1 archive (tar of the uploaded files, relative paths; gzip or not, tar tells), $2 source (the
 * glob-free prefix of the step's source), $3 destination, $4 owner (user[:group]), $5
 * mode (octal, may be empty), $6 the directory relative destinations are under (empty:
 * the home of $7, the build's user). A
 * file goes to the destination, or inside it if it ends in `/`; a directory's contents
 * are merged into it (Docker's COPY).
 */
export const COPY_SCRIPT = `set -e
${HOME_OF}
arc=$1 src=$2 dest=$3 owner=$4 mode=$5 base=$6 user=$7
[ -n "$base" ] || base=$(home_of "$user")
case "$dest" in /*) ;; *) dest="\${base%/}/$dest" ;; esac
u=$(mktemp -d /tmp/aiva-copy.XXXXXX)
# gzip or plain (busybox tar does not tell them apart by itself)
if [ "$(head -c 2 "$arc" | od -An -tx1 | tr -d ' \\n')" = 1f8b ]; then tar -xzf "$arc" -C "$u"; else tar -xf "$arc" -C "$u"; fi
rm -f "$arc"
from="$u/$src"
if [ ! -e "$from" ] && [ ! -L "$from" ]; then echo "source path does not exist: $src" >&2; rm -rf "$u"; exit 1; fi
if [ -L "$from" ]; then
  chown -h "$owner" "$from"
  mkdir -p "$(dirname "$dest")"
  mv "$from" "$dest"
elif [ -d "$from" ]; then
  chown -R "$owner" "$from"
  [ -z "$mode" ] || chmod -R "$mode" "$from"
  mkdir -p "$dest"
  (cd "$from" && tar -cf - .) | tar -xf - -C "$dest" --keep-directory-symlink --no-overwrite-dir
else
  chown "$owner" "$from"
  [ -z "$mode" ] || chmod "$mode" "$from"
  case "$dest" in
    */) mkdir -p "$dest"; mv "$from" "$dest" ;;
    *) mkdir -p "$(dirname "$dest")"; mv "$from" "$dest" ;;
  esac
fi
rm -rf "$u"
`;

/**
 * WORKDIR: $1 the absolute directory, $2 the owner of what has to be made. A missing
 * directory is made and its first new ancestor given to the owner; an existing one is
 * left as it is. Prints the directory's real path.
 */
export const WORKDIR_SCRIPT = `set -e
p=$1 owner=$2
if [ ! -d "$p" ]; then
  first=$p
  while [ ! -e "$(dirname "$first")" ]; do first=$(dirname "$first"); done
  mkdir -p "$p"
  chown -R "$owner" "$first"
fi
cd "$p" && pwd -P
`;

/**
 * USER: $1 the user, made (with a home and bash, or sh) if missing; $2 \`true\` gives it
 * passwordless sudo where sudo is installed (E2B's default user). Prints its home.
 */
export const USER_SCRIPT = `set -e
${HOME_OF}
name=$1 sudo=$2
if ! id -u "$name" >/dev/null 2>&1; then
  shell=/bin/sh; [ -x /bin/bash ] && shell=/bin/bash
  if command -v useradd >/dev/null 2>&1; then useradd --create-home --shell "$shell" "$name"
  elif command -v adduser >/dev/null 2>&1; then adduser -D -s "$shell" "$name"
  else
    # No tool for it (a minimal image): the first free uid from 1000, by hand.
    uid=1000
    while awk -F: -v u="$uid" '$3 == u { f = 1 } END { exit !f }' /etc/passwd 2>/dev/null; do uid=$((uid + 1)); done
    printf '%s:x:%s:%s::/home/%s:%s\\n' "$name" "$uid" "$uid" "$name" "$shell" >> /etc/passwd
    grep -q "^$name:" /etc/group 2>/dev/null || printf '%s:x:%s:\\n' "$name" "$uid" >> /etc/group
    mkdir -p "/home/$name"
    chown "$uid:$uid" "/home/$name"
  fi
fi
rule="$name ALL=(ALL:ALL) NOPASSWD: ALL"
if [ "$sudo" = true ] && [ -d /etc/sudoers.d ] && ! grep -qsxF "$rule" "/etc/sudoers.d/90-$name"; then
  printf '%s\\n' "$rule" > "/etc/sudoers.d/90-$name"
  chmod 0440 "/etc/sudoers.d/90-$name"
fi
home_of "$name"
`;

/** The glob-free leading part of a COPY source (`app/*.py` → `app`, `*.py` → `.`), as E2B's. */
export function copySourcePrefix(src: string): string {
  const parts = src.split('/').filter((p) => p !== '' && p !== '.');
  const fixed: string[] = [];
  for (const p of parts) {
    if (/[*?[\]{}]/.test(p)) break;
    fixed.push(p);
  }
  return fixed.length > 0 ? fixed.join('/') : '.';
}

/** `$VAR` and `${VAR}` in an ENV value, from the build's environment so far (unknown ones are empty). */
export function expandEnv(value: string, env: Record<string, string>): string {
  return value.replace(
    /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_m, a, b) => env[a ?? b] ?? '',
  );
}
