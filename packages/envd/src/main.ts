import { createServer } from 'node:http';

const port = Number(process.env.ENVD_PORT ?? 49983);

const server = createServer((req, res) => {
  if (req.url === '/health' || (req.method === 'POST' && req.url === '/init')) {
    res.writeHead(204).end();
    return;
  }
  res
    .writeHead(404, { 'content-type': 'application/json' })
    .end(JSON.stringify({ code: 404, message: 'not found' }));
});
server.listen(port, '0.0.0.0', () => console.log(`envd listening on :${port}`));
