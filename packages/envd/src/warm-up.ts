import { request } from 'node:http';

/**
 * Runs one command through envd's own HTTP server as the e2b SDK would
 * (`process.Process/Start`, Connect with the JSON codec, `bash -l -c true`) and reads the
 * stream to its end. Node compiles the request, RPC and process code on first use, which
 * costs a first command tens of milliseconds (hundreds under TCG); done before envd
 * reports healthy, nobody's command pays for it. Rejects after `timeoutMs`.
 */
export function warmUp(port: number, timeoutMs = 10_000): Promise<void> {
  const message = Buffer.from(JSON.stringify({ process: { cmd: '/bin/bash', args: ['-l', '-c', 'true'] } }));
  const envelope = Buffer.alloc(5 + message.length);
  envelope.writeUInt32BE(message.length, 1);
  message.copy(envelope, 5);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/process.Process/Start',
        headers: {
          'content-type': 'application/connect+json',
          'connect-protocol-version': '1',
          'content-length': envelope.length,
        },
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => (/"end"/.test(body) ? resolve() : reject(new Error('the command did not end'))));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(envelope);
  });
}
