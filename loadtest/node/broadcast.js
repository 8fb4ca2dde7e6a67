// A minimal broadcast server on Node's `ws` library doing the fan-out of tickflow's
// ws-broadcast sink, for `tickflow-load broadcast` to measure beside it under the same load.
//
// Input: one TCP connection on --feed-port from tickflow-load: a u32 LE length + JSON header
// ({"symbols":[...],"venues":[...]}), then messages of u32 LE kind (0 quote, 2 spread sample),
// u32 LE count and `count` raw records in tickflow's C layout (64-byte tf_quote, 96-byte
// tf_spread_sample). Output: the same protocol subset as the sink: hello, subscribe with ack,
// quotes:<SYMBOL> and spreads:<SYMBOL> conflated per key and serialized once per --flush-ms into
// one Buffer sent to every subscriber, pings every 15 s (no pong: terminate), and a client with
// more than 1 MiB buffered skips frames (the usual guard; without it a dead client grows
// without bound). Prints one JSON line of counters when the feed ends (or on SIGTERM).
'use strict';

const net = require('net');
const { WebSocketServer } = require('ws');

function arg(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : fallback;
}
const port = Number(arg('port', '0'));
const feedPort = Number(arg('feed-port', '0'));
const flushMs = Number(arg('flush-ms', '100'));
const bufferedMax = 1 << 20;

let symbols = [];
let venues = [];
const channels = new Map(); // name -> Set<ws>
const pending = new Map(); // name -> Map<key, json text>
const counters = { frames_built: 0, frames_out: 0, bytes_out: 0, skipped: 0, clients: 0, terminated: 0 };

const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 64 * 1024 });
wss.on('connection', (ws) => {
  counters.clients++;
  ws.isAlive = true;
  ws.subscriptions = new Set();
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('message', (data) => {
    let message;
    try { message = JSON.parse(data); } catch (error) {
      ws.send(JSON.stringify({ error: 'bad json', code: 'bad_json' }));
      return;
    }
    if (message.op !== 'subscribe' || !Array.isArray(message.channels)) {
      ws.send(JSON.stringify({ error: 'unknown op', code: 'unknown_op' }));
      return;
    }
    for (const name of message.channels) {
      let set = channels.get(name);
      if (!set) { set = new Set(); channels.set(name, set); }
      set.add(ws);
      ws.subscriptions.add(name);
    }
    ws.send(JSON.stringify({ op: 'subscribed', channels: message.channels }));
  });
  ws.on('close', () => {
    counters.clients--;
    for (const name of ws.subscriptions) channels.get(name)?.delete(ws);
  });
  ws.on('error', () => {});
  ws.send(JSON.stringify({ hello: 'tickflow', protocol: 1, server: 'node-ws' }));
});

setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) { counters.terminated++; ws.terminate(); continue; }
    ws.isAlive = false;
    ws.ping();
  }
}, 15000);

setInterval(() => {
  for (const [name, records] of pending) {
    const subscribers = channels.get(name);
    if (subscribers && subscribers.size > 0) {
      const frame = Buffer.from(`{"ch":"${name}","data":[${Array.from(records.values()).join(',')}]}`);
      counters.frames_built++;
      for (const ws of subscribers) {
        if (ws.bufferedAmount > bufferedMax) { counters.skipped++; continue; }
        ws.send(frame, { binary: false });
        counters.frames_out++;
        counters.bytes_out += frame.length;
      }
    }
  }
  pending.clear();
}, flushMs);

function num(value) { return Number.isFinite(value) ? String(value) : 'null'; }

function quote(buffer, offset) {
  const symbol = symbols[buffer.readUInt32LE(offset + 56)];
  const venue = venues[buffer.readUInt16LE(offset + 60)];
  const text = `{"symbol":"${symbol}","venue":"${venue}","bid":${num(buffer.readDoubleLE(offset))},` +
    `"bid_qty":${num(buffer.readDoubleLE(offset + 8))},"ask":${num(buffer.readDoubleLE(offset + 16))},` +
    `"ask_qty":${num(buffer.readDoubleLE(offset + 24))},"ts_exchange_ns":${buffer.readBigInt64LE(offset + 32)},` +
    `"ts_recv_ns":${buffer.readBigInt64LE(offset + 40)},"seq":${buffer.readBigUInt64LE(offset + 48)},` +
    `"flags":${buffer.readUInt8(offset + 62)}}`;
  put(`quotes:${symbol}`, venue, text);
}

function spread(buffer, offset) {
  const symbol = symbols[buffer.readUInt32LE(offset + 84)];
  const buy = venues[buffer.readUInt16LE(offset + 88)];
  const sell = venues[buffer.readUInt16LE(offset + 90)];
  const f = (at) => num(buffer.readDoubleLE(offset + at));
  const text = `{"symbol":"${symbol}","buy_venue":"${buy}","sell_venue":"${sell}",` +
    `"bucket_start_ns":${buffer.readBigInt64LE(offset)},"bucket_duration_ns":${buffer.readBigInt64LE(offset + 8)},` +
    `"last_bp":${f(16)},"min_bp":${f(24)},"max_bp":${f(32)},"mean_bp":${f(40)},"window_mean_bp":${f(48)},` +
    `"window_std_bp":${f(56)},"band_lower_bp":${f(64)},"band_upper_bp":${f(72)},` +
    `"samples":${buffer.readUInt32LE(offset + 80)},"flags":${buffer.readUInt32LE(offset + 92)}}`;
  put(`spreads:${symbol}`, `${buy}/${sell}`, text);
}

function put(name, key, text) {
  let records = pending.get(name);
  if (!records) { records = new Map(); pending.set(name, records); }
  records.set(key, text);
}

const feed = net.createServer((socket) => {
  let buffered = Buffer.alloc(0);
  let headerDone = false;
  // The feed's end ends the server (after one line of counters), like the sink's process.
  socket.on('end', () => {
    process.stdout.write(`${JSON.stringify(counters)}\n`);
    process.exit(0);
  });
  socket.on('error', () => {});
  socket.on('data', (chunk) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    let offset = 0;
    for (;;) {
      if (!headerDone) {
        if (buffered.length - offset < 4) break;
        const length = buffered.readUInt32LE(offset);
        if (buffered.length - offset < 4 + length) break;
        const header = JSON.parse(buffered.subarray(offset + 4, offset + 4 + length).toString());
        symbols = header.symbols;
        venues = header.venues;
        headerDone = true;
        offset += 4 + length;
        continue;
      }
      if (buffered.length - offset < 8) break;
      const kind = buffered.readUInt32LE(offset);
      const count = buffered.readUInt32LE(offset + 4);
      const size = kind === 0 ? 64 : 96;
      if (buffered.length - offset < 8 + count * size) break;
      let at = offset + 8;
      for (let index = 0; index < count; index++, at += size) {
        if (kind === 0) quote(buffered, at); else spread(buffered, at);
      }
      offset = at;
    }
    buffered = buffered.subarray(offset);
  });
});
wss.on('listening', () => {
  feed.listen(feedPort, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ ready: true, port: wss.address().port, feed_port: feed.address().port })}\n`);
  });
});

process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify(counters)}\n`);
  process.exit(0);
});
