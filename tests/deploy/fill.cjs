// Sends COUNT distinct queries (PREFIX<i>.ZONE, type TYPE, with EDNS 1232) to
// SERVER over UDP, WINDOW at a time; prints the answers by rcode and exits 1
// when fewer than 99 % came back NOERROR. Bounded: each query waits at most
// 2 s, the whole run at most 120 s.
//   node fill.cjs SERVER PORT ZONE TYPE COUNT [PREFIX] [WINDOW]
'use strict';
const dgram = require('dgram');
const [server, port, zone, type, countArg, prefix = 'n', windowArg = '200'] = process.argv.slice(2);
const count = Number(countArg);
const win = Number(windowArg);
const qtype = { A: 1, TXT: 16 }[type];
function query(id, name) {
  const labels = name.split('.').filter(Boolean);
  const parts = [Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, 0, qtype, 0, 1]));
  parts.push(Buffer.from([0, 0, 41, 1232 >> 8, 1232 & 255, 0, 0, 0, 0, 0, 0])); // OPT
  return Buffer.concat(parts);
}
const sock = dgram.createSocket('udp4');
const pending = new Map(); // id -> [index, sent at]
const rcodes = {};
let next = 0, done = 0, lost = 0;
const deadline = Date.now() + 120000;
function send() {
  while (pending.size < win && next < count) {
    let id;
    do { id = Math.floor(Math.random() * 65536); } while (pending.has(id));
    pending.set(id, [next, Date.now()]);
    sock.send(query(id, `${prefix}${next}.${zone}`), Number(port), server);
    next++;
  }
  if (done + lost >= count || Date.now() > deadline) finish();
}
function finish() {
  sock.close();
  clearInterval(timer);
  const ok = rcodes[0] || 0;
  console.log(JSON.stringify({ sent: next, answered: done, lost, rcodes }));
  process.exit(ok >= 0.99 * count ? 0 : 1);
}
sock.on('message', (msg) => {
  const id = msg.readUInt16BE(0);
  if (!pending.has(id)) return;
  pending.delete(id);
  done++;
  const rc = msg[3] & 15;
  rcodes[rc] = (rcodes[rc] || 0) + 1;
  send();
});
const timer = setInterval(() => {
  const now = Date.now();
  for (const [id, [, at]] of pending) if (now - at > 2000) { pending.delete(id); lost++; }
  send();
}, 100);
sock.bind(0, () => send());
