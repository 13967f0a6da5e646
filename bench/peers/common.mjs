// What the peer scenarios share (bench/peers/socketio.mjs, centrifugo.mjs): the flags, the
// server's CPU and memory from /proc, and the measured run with the same report lines as
// chatwire-bench, so the three can be read side by side.
import { readFileSync } from 'node:fs';

/** The flags, with chatwire-bench's defaults. */
export function settings(argv) {
  const args = Object.fromEntries(
    argv.reduce((pairs, arg, i, all) => {
      if (arg.startsWith('--')) pairs.push([arg.slice(2), all[i + 1]]);
      return pairs;
    }, []),
  );
  return {
    args,
    subscribers: Number(args.subscribers ?? 1),
    senders: Number(args.clients ?? 16),
    messages: Number(args.messages ?? 200),
    idle: Number(args.idle ?? 0),
    size: Number(args.size ?? 100),
  };
}

/** User + system CPU seconds of a process. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident memory of a process, KiB. */
export function rssKib(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** Opens `count` idle sessions with `open(i)` and reports the server's memory per session. */
export async function openIdle(pid, count, open) {
  const before = rssKib(pid);
  const idle = [];
  for (let i = 0; i < count; i++) idle.push(await open(i));
  if (count > 0) {
    const after = rssKib(pid);
    const each = ((after - before) / count).toFixed(1);
    console.log(`idle: ${count} sessions, server RSS ${before} -> ${after} KiB: ${each} KiB per connection`);
  }
  return idle;
}

/**
 * Each writer sends `messages` messages one at a time with `send(writer, body)` (resolving on
 * the peer's acknowledgement); then waits (bounded) until `delivered()` reaches every
 * subscriber, and reports.
 */
export async function measure({ pid, writers, send, delivered, settings: s }) {
  const { senders, messages, subscribers, size } = s;
  const cpuBefore = cpuSeconds(pid);
  const started = process.hrtime.bigint();
  const body = 'x'.repeat(size);
  const latencies = [];
  await Promise.all(
    writers.map(async (writer) => {
      for (let m = 0; m < messages; m++) {
        const sent = process.hrtime.bigint();
        await send(writer, body);
        latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
      }
    }),
  );
  const acked = Number(process.hrtime.bigint() - started) / 1e9;
  const expected = senders * messages * subscribers;
  // Deliveries still in flight after the last acknowledgement: wait for them (bounded).
  const deadline = Date.now() + 60_000;
  while (delivered() < expected && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = cpuSeconds(pid) - cpuBefore;
  latencies.sort((a, b) => a - b);
  const pct = (p) => (latencies[Math.round((latencies.length - 1) * p)] ?? 0).toFixed(2);
  const got = delivered();
  console.log(`senders ${senders} x messages ${messages} (${size} B text), ${subscribers} subscribers`);
  console.log(`acknowledged ${latencies.length} in ${acked.toFixed(2)} s: ${(latencies.length / acked).toFixed(0)} msg/s`);
  console.log(`ack latency ms: p50 ${pct(0.5)}  p95 ${pct(0.95)}  p99 ${pct(0.99)}  max ${pct(1)}`);
  console.log(
    `deliveries: ${got} of ${expected} in ${wall.toFixed(2)} s (${(got / wall).toFixed(0)}/s wall); lost ${expected - got}`,
  );
  console.log(`server CPU ${cpu.toFixed(2)} s: ${(got / Math.max(cpu, 0.01)).toFixed(0)} deliveries per server-CPU-second`);
}
