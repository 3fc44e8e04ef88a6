// The browser template's DevTools endpoint on port 9222 (CommonJS for Debian's node in
// the sandbox). Chromium serves the Chrome DevTools Protocol on 127.0.0.1:9223 and
// refuses HTTP and WebSocket requests whose Host header is not an IP address or
// localhost, which is what every client outside the sandbox sends through aiva's proxy
// (`9222-<id>.<domain>`). This forwards each request with Host set to Chromium's own
// address, and writes the client's address back into the JSON Chromium answers (the
// webSocketDebuggerUrl that Playwright's connectOverCDP and Puppeteer follow), with
// wss when the client came over TLS (X-Forwarded-Proto from the proxy).
const http = require('node:http');
const net = require('node:net');

const LISTEN_PORT = Number(process.env.AIVA_CDP_PORT || 9222);
const CHROMIUM_PORT = Number(process.env.AIVA_CHROMIUM_CDP_PORT || 9223);
const chromium = `127.0.0.1:${CHROMIUM_PORT}`;

function first(value) {
  return String(Array.isArray(value) ? value[0] : (value ?? ''))
    .split(',')[0]
    .trim();
}

/** The address the client used: the proxy's X-Forwarded-Host when it masked Host, else Host. */
function clientHost(req) {
  return first(req.headers['x-forwarded-host']) || first(req.headers.host) || `localhost:${LISTEN_PORT}`;
}

function clientWsScheme(req) {
  return first(req.headers['x-forwarded-proto']) === 'https' ? 'wss' : 'ws';
}

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, host: chromium };
  delete headers['accept-encoding'];
  const upstream = http.request(
    { host: '127.0.0.1', port: CHROMIUM_PORT, method: req.method, path: req.url, headers },
    (answer) => {
      if (!String(answer.headers['content-type'] ?? '').includes('json')) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks = [];
      answer.on('data', (c) => chunks.push(c));
      answer.on('end', () => {
        const host = clientHost(req);
        const text = Buffer.concat(chunks)
          .toString('utf8')
          .replaceAll(`ws://${chromium}`, `${clientWsScheme(req)}://${host}`)
          .replaceAll(chromium, host);
        const body = Buffer.from(text, 'utf8');
        res.writeHead(answer.statusCode ?? 502, { ...answer.headers, 'content-length': body.length });
        res.end(body);
      });
    },
  );
  upstream.on('error', (e) => {
    if (res.headersSent) return res.destroy();
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`Chromium's DevTools on ${chromium} did not answer: ${e.message}\n`);
  });
  req.pipe(upstream);
});

server.on('upgrade', (req, socket, head) => {
  const upstream = net.connect(CHROMIUM_PORT, '127.0.0.1');
  const end = () => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on('error', end);
  socket.on('error', end);
  upstream.on('close', end);
  socket.on('close', end);
  upstream.on('connect', () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`, `Host: ${chromium}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i].toLowerCase() !== 'host')
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    }
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
});

server.listen(LISTEN_PORT, '0.0.0.0', () => {
  console.log(`DevTools of ${chromium} served on port ${LISTEN_PORT}`);
});
