import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';

// The Jupyter messaging protocol's wire format (version 5.3): a message travels as the
// frames [routing ids…, "<IDS|MSG>", HMAC, header, parent_header, metadata, content,
// buffers…], each dict JSON, the HMAC-SHA256 hex of the four dicts under the connection's
// key. https://jupyter-client.readthedocs.io/en/stable/messaging.html#the-wire-protocol

export const DELIMITER = '<IDS|MSG>';
export const PROTOCOL_VERSION = '5.3';

export interface MessageHeader {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
}

export interface JupyterMessage<C = Record<string, unknown>> {
  header: MessageHeader;
  /** The header of the request this message answers or came from; `{}` for requests. */
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: C;
  buffers?: Buffer[];
}

/** A received message's problem: its frames are not a signed Jupyter message. */
export class WireError extends Error {
  override name = 'WireError';
}

/** Signs and checks messages with one connection's key. */
export class MessageCodec {
  private readonly key: Buffer;

  constructor(
    key: string,
    readonly session: string = randomUUID(),
    readonly username = 'aiva',
  ) {
    this.key = Buffer.from(key, 'utf8');
  }

  /** A new request of `msgType`. */
  request<C>(msgType: string, content: C): JupyterMessage<C> {
    return {
      header: {
        msg_id: randomUUID(),
        session: this.session,
        username: this.username,
        date: new Date().toISOString(),
        msg_type: msgType,
        version: PROTOCOL_VERSION,
      },
      parent_header: {},
      metadata: {},
      content,
    };
  }

  private sign(parts: Buffer[]): string {
    const hmac = createHmac('sha256', this.key);
    for (const p of parts) hmac.update(p);
    return hmac.digest('hex');
  }

  /** The frames of `msg` (a DEALER's: no routing ids). */
  encode(msg: JupyterMessage<unknown>): Buffer[] {
    const dicts = [msg.header, msg.parent_header, msg.metadata, msg.content].map((d) =>
      Buffer.from(JSON.stringify(d), 'utf8'),
    );
    return [Buffer.from(DELIMITER), Buffer.from(this.sign(dicts)), ...dicts, ...(msg.buffers ?? [])];
  }

  /** The message in `frames`; a WireError if it is malformed or its signature is wrong. */
  decode(frames: Buffer[]): JupyterMessage {
    const at = frames.findIndex((f) => f.length === DELIMITER.length && f.toString() === DELIMITER);
    if (at < 0) throw new WireError('no <IDS|MSG> delimiter');
    const signature = frames[at + 1];
    const dicts = frames.slice(at + 2, at + 6);
    if (!signature || dicts.length < 4) throw new WireError(`a message has ${frames.length - at} frames`);
    const expected = Buffer.from(this.sign(dicts));
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected))
      throw new WireError('a message has a wrong signature');
    const [header, parent, metadata, content] = dicts.map((d) => JSON.parse(d.toString('utf8')));
    return { header, parent_header: parent, metadata, content, buffers: frames.slice(at + 6) };
  }
}
