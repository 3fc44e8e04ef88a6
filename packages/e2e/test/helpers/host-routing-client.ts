// The e2b SDK as a user runs it with E2B_DOMAIN only (no E2B_API_URL / E2B_SANDBOX_URL):
// every request goes to https://api.<domain> or https://<port>-<id>.<domain>. Run by the
// host-routing test in a process of its own (trusting aiva's CA, resolving names through
// aiva's DNS listener); prints what it saw as one line of JSON.
import { Sandbox, Volume } from 'e2b';

const sbx = await Sandbox.create({ envs: { ROUTE: 'host' } });
try {
  const run = await sbx.commands.run('echo "$ROUTE $(whoami)"');
  await sbx.files.write('/home/user/site/index.html', 'by host name');
  const read = await sbx.files.read('/home/user/site/index.html');
  await sbx.commands.run('cd /home/user/site && (setsid python3 -m http.server 8000 >/dev/null 2>&1 &)');
  const host = sbx.getHost(8000);
  let status = 0;
  let body = '';
  for (let i = 0; i < 100 && status !== 200; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    const res = await fetch(`https://${host}/index.html`);
    status = res.status;
    body = await res.text();
  }
  // Signed file URLs, fetched with no header at all: only the host name routes them.
  const uploadUrl = await sbx.uploadUrl('/home/user/uploaded.txt');
  const form = new FormData();
  form.append('file', new Blob(['through a signed URL']), 'uploaded.txt');
  const upload = await fetch(uploadUrl, { method: 'POST', body: form });
  const uploadStatus = upload.status;
  await upload.arrayBuffer();
  const downloadUrl = await sbx.downloadUrl('/home/user/uploaded.txt');
  const download = await fetch(downloadUrl);
  const downloaded = { status: download.status, body: await download.text() };
  const listed = (await Sandbox.list().nextItems()).map((s) => s.sandboxId);
  // A volume's content API is https://api.<domain> too (no E2B_VOLUME_API_URL).
  const vol = await Volume.create('by-host-name');
  let volume: string;
  try {
    await vol.writeFile('v.txt', 'through api.<domain>');
    volume = await vol.readFile('v.txt');
  } finally {
    await Volume.destroy(vol.volumeId);
  }
  process.stdout.write(
    `${JSON.stringify({
      id: sbx.sandboxId,
      run: run.stdout,
      read,
      host,
      status,
      body,
      uploadUrl,
      uploadStatus,
      downloadUrl,
      downloaded,
      listed,
      volume,
    })}\n`,
  );
} finally {
  await sbx.kill();
}
