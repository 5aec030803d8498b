// BullMQ for Node: the benchmark adapter. A faithful port of ../common.py (same scenarios,
// same timing and polling, same JSON line) around BullMQ's own Queue and Worker.
//
//   node adapter.mjs SCENARIO --url URL --n N --processes P --concurrency C
//   node adapter.mjs worker --url URL --concurrency C      (a worker process, started by the above)

import { execSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const QUEUE = 'bench';
const PREFIX = 'bull';
const SCENARIOS = [
  'enqueue', 'enqueue_bulk', 'drain', 'io', 'latency', 'delayed', 'memory', 'idle', 'producers',
];
const LATENCY_KEY = 'bench:latency';
const POLL = 0.002;
const SELF = fileURLToPath(import.meta.url);

// Wall-clock seconds with sub-millisecond precision (like Python's time.time()).
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

function report(scenario, fields) {
  process.stdout.write(JSON.stringify({ scenario, ...fields }) + '\n');
}

function parseArgs(argv) {
  const args = { url: null, n: 20000, processes: 1, concurrency: 10 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const [key, inline] = a.slice(2).split('=', 2);
      const value = inline !== undefined ? inline : argv[++i];
      args[key] = key === 'url' ? value : Number.parseInt(value, 10);
    } else {
      rest.push(a);
    }
  }
  args.positional = rest;
  return args;
}

function median(sorted) {
  const m = sorted.length >> 1;
  return sorted.length % 2 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
}

// ---------------------------------------------------------------------------------------------
// The worker process.

async function runWorker(url, concurrency) {
  const client = new IORedis(url, { maxRetriesPerRequest: null });
  const processor = async (job) => {
    if (job.name === 'io') {
      await sleep(0.01);
    } else if (job.name === 'latency') {
      await client.rpush(LATENCY_KEY, String(now()));
    }
    return null;
  };
  const worker = new Worker(QUEUE, processor, { connection: { url }, prefix: PREFIX, concurrency });
  worker.on('error', (err) => process.stderr.write(`worker error: ${err}\n`));
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    await worker.close();
    await client.quit();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------------------------------------
// The adapter: the peer's part, then the shared machinery of common.py.

class BullMQNodeAdapter {
  constructor(url) {
    this.url = url;
    this.redis = new IORedis(url, { maxRetriesPerRequest: null });
    this.queue = new Queue(QUEUE, { connection: { url }, prefix: PREFIX });
    const base = `${PREFIX}:${QUEUE}:`;
    // Read in the direction jobs flow (delayed -> prioritized/wait -> active): a job that
    // moves between two reads is then seen twice, never missed.
    this.zsets = [base + 'delayed', base + 'prioritized'];
    this.lists = [base + 'wait', base + 'active'];
    this.tick = Number.parseInt(execSync('getconf CLK_TCK').toString().trim(), 10) || 100;
  }

  // -- the peer's part --------------------------------------------------------------------------

  opts(delayS) {
    return delayS > 0 ? { delay: Math.trunc(delayS * 1000) } : {};
  }

  async enqueueOne(kind, i, delayS = 0) {
    await this.queue.add(kind, { i }, this.opts(delayS));
  }

  async enqueueBulk(kind, n, delayS = 0) {
    const opts = this.opts(delayS);
    for (let start = 0; start < n; start += 1000) {
      const jobs = [];
      for (let i = start; i < Math.min(start + 1000, n); i++) {
        jobs.push({ name: kind, data: { i }, opts });
      }
      await this.queue.addBulk(jobs);
    }
    return true;
  }

  // `producers` async loops under one Promise.all, each awaiting its own add: as many
  // adds in flight as producers (100), all written to the queue's one ioredis connection
  // without waiting for replies (BullMQ leaves ioredis's enableAutoPipelining off).
  async enqueueConcurrent(kind, n, producers) {
    const produce = async (p, count) => {
      for (let i = 0; i < count; i++) await this.queue.add(kind, { i: [p, i] });
    };
    const share = (p) => Math.floor(n / producers) + (p < n % producers ? 1 : 0);
    await Promise.all(Array.from({ length: producers }, (_, p) => produce(p, share(p))));
    return true;
  }

  startWorkers(kind, processes, concurrency) {
    const procs = [];
    for (let p = 0; p < processes; p++) {
      // The worker's stdout goes to our stderr: our stdout's last line is the result.
      procs.push(spawn(process.execPath,
        [SELF, 'worker', '--url', this.url, '--concurrency', String(concurrency)],
        { stdio: ['ignore', process.stderr, 'inherit'] }));
    }
    return procs;
  }

  async remaining() {
    const pipe = this.redis.pipeline();
    for (const key of this.zsets) pipe.zcard(key);
    for (const key of this.lists) pipe.llen(key);
    const results = await pipe.exec();
    let total = 0;
    for (const [err, value] of results) {
      if (err) throw err;
      total += Number(value);
    }
    return total;
  }

  async close() {
    await this.queue.close();
    await this.redis.quit();
  }

  // -- shared machinery (common.py) -------------------------------------------------------------

  async fill(kind, n, delayS = 0) {
    if (!(await this.enqueueBulk(kind, n, delayS))) {
      for (let i = 0; i < n; i++) await this.enqueueOne(kind, i, delayS);
    }
  }

  async waitDone(n, timeout = 600.0) {
    const deadline = now() + timeout;
    let first = 0.0;
    let counted = 0;
    for (;;) {
      const left = await this.remaining();
      const t = now();
      if (!first && left < n) {
        first = t;
        counted = left;
      }
      if (left <= 0) return [first, t, counted];
      if (t > deadline) {
        throw new Error(`${left} of ${n} jobs still not finished after ${timeout}s`);
      }
      await sleep(POLL);
    }
  }

  async stop(procs) {
    const exited = (p) => p.exitCode !== null || p.signalCode !== null;
    const waitExit = (p, seconds) => new Promise((resolve) => {
      if (exited(p)) return resolve(true);
      const timer = setTimeout(() => resolve(false), seconds * 1000);
      p.once('exit', () => { clearTimeout(timer); resolve(true); });
    });
    for (const p of procs) if (!exited(p)) p.kill('SIGTERM');
    for (const p of procs) {
      if (!(await waitExit(p, 15))) {
        p.kill('SIGKILL');
        await waitExit(p, 60);
      }
    }
  }

  async info(section) {
    const fields = {};
    for (const line of (await this.redis.info(section)).split('\r\n')) {
      const at = line.indexOf(':');
      if (at > 0 && !line.startsWith('#')) fields[line.slice(0, at)] = line.slice(at + 1);
    }
    return fields;
  }

  async usedMemory() {
    return Number.parseInt((await this.info('memory')).used_memory_dataset, 10);
  }

  async commandstats() {
    let total = 0;
    for (const [key, value] of Object.entries(await this.info('commandstats'))) {
      if (key === 'cmdstat_info' || key === 'cmdstat_config|resetstat') continue;
      const calls = /(?:^|,)calls=(\d+)/.exec(value);
      if (calls) total += Number.parseInt(calls[1], 10);
    }
    return total;
  }

  async resetstat() {
    await this.redis.config('RESETSTAT');
  }

  // User+system CPU seconds of the processes and their children, from /proc.
  cpuSeconds(procs) {
    const pids = new Set(procs.map((p) => p.pid));
    let total = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let fields;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        fields = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
      } catch {
        continue;
      }
      const pid = Number(entry);
      const ppid = Number(fields[1]);
      if (pids.has(pid) || pids.has(ppid)) {
        total += (Number(fields[11]) + Number(fields[12])) / this.tick;
      }
    }
    return total;
  }

  // -- scenarios --------------------------------------------------------------------------------

  async run(scenario, n, processes, concurrency) {
    const method = {
      enqueue: this.scenarioEnqueue,
      enqueue_bulk: this.scenarioEnqueueBulk,
      drain: this.scenarioDrain,
      io: this.scenarioIo,
      latency: this.scenarioLatency,
      delayed: this.scenarioDelayed,
      memory: this.scenarioMemory,
      idle: this.scenarioIdle,
      producers: this.scenarioProducers,
    }[scenario];
    await method.call(this, n, processes, concurrency);
  }

  async scenarioEnqueue(n) {
    const t0 = now();
    for (let i = 0; i < n; i++) await this.enqueueOne('noop', i);
    report('enqueue', { value: n / (now() - t0), unit: 'jobs/s' });
  }

  async scenarioEnqueueBulk(n) {
    const t0 = now();
    if (!(await this.enqueueBulk('noop', n))) {
      report('enqueue_bulk', { value: null, unit: 'jobs/s', note: 'no bulk API' });
      return;
    }
    report('enqueue_bulk', { value: n / (now() - t0), unit: 'jobs/s' });
  }

  async drain(kind, n, processes, concurrency) {
    await this.fill(kind, n);
    const procs = this.startWorkers(kind, processes, concurrency);
    let first, last, leftAtFirst;
    try {
      [first, last, leftAtFirst] = await this.waitDone(n);
    } finally {
      await this.stop(procs);
    }
    return last > first ? leftAtFirst / (last - first) : Number.NaN;
  }

  async scenarioProducers(n, processes, concurrency) {
    const t0 = now();
    await this.enqueueConcurrent('noop', n, concurrency);
    const elapsed = now() - t0;
    const left = await this.remaining();
    if (left !== n) throw new Error(`${left} jobs waiting after adding ${n}`);
    report('producers', { value: n / elapsed, unit: 'jobs/s', producers: concurrency });
  }

  async scenarioDrain(n, processes, concurrency) {
    report('drain', {
      value: await this.drain('noop', n, processes, concurrency), unit: 'jobs/s', processes,
    });
  }

  async scenarioIo(n, processes, concurrency) {
    report('io', {
      value: await this.drain('io', n, processes, concurrency), unit: 'jobs/s', concurrency,
    });
  }

  async scenarioLatency(n, processes, concurrency) {
    const procs = this.startWorkers('latency', 1, concurrency);
    const samples = [];
    try {
      await this.redis.del(LATENCY_KEY);
      await this.enqueueOne('latency', -1); // warm-up: the worker is up once this ran
      await this.redis.blpop(LATENCY_KEY, 60);
      for (let i = 0; i < n; i++) {
        const t0 = now();
        await this.enqueueOne('latency', i);
        const popped = await this.redis.blpop(LATENCY_KEY, 30);
        if (popped === null) throw new Error('a latency job did not start within 30 s');
        samples.push((Number.parseFloat(popped[1]) - t0) * 1000);
        await sleep(0.01); // let the worker go idle again between samples
      }
    } finally {
      await this.stop(procs);
    }
    samples.sort((a, b) => a - b);
    const p50 = median(samples);
    const at = Math.trunc(samples.length * 0.99) - 1;
    report('latency', {
      value: p50, unit: 'ms', p50, p99: samples[at < 0 ? samples.length + at : at],
    });
  }

  async scenarioDelayed(n, processes, concurrency) {
    const procs = this.startWorkers('noop', processes, concurrency);
    let due, last;
    try {
      const t0 = now();
      due = t0 + 5.0 + n / 2000; // room to add them all before they fall due
      for (let i = 0; i < n; i++) await this.enqueueOne('noop', i, Math.max(due - now(), 0.001));
      while (now() < due) await sleep(POLL);
      [, last] = await this.waitDone(n);
    } finally {
      await this.stop(procs);
    }
    report('delayed', { value: n / (last - due), unit: 'jobs/s' });
  }

  async scenarioMemory(n, processes, concurrency) {
    const before = await this.usedMemory();
    await this.fill('noop', n);
    const waiting = await this.usedMemory();
    await this.resetstat();
    const procs = this.startWorkers('noop', 1, concurrency);
    try {
      await this.waitDone(n);
    } finally {
      await this.stop(procs);
    }
    const commands = await this.commandstats();
    const kept = await this.usedMemory();
    report('memory', {
      value: (waiting - before) / n, unit: 'bytes/waiting job',
      per_waiting_job: (waiting - before) / n, per_finished_job: (kept - before) / n,
      commands_per_job: commands / n,
    });
  }

  async scenarioIdle(n, processes, concurrency) {
    const procs = this.startWorkers('noop', 1, concurrency);
    let commands, cpu, elapsed;
    try {
      await this.enqueueOne('noop', 0);
      await this.waitDone(1);
      await sleep(1.0);
      await this.resetstat();
      const cpu0 = this.cpuSeconds(procs);
      const t0 = now();
      await sleep(10.0);
      elapsed = now() - t0;
      cpu = this.cpuSeconds(procs) - cpu0;
      commands = await this.commandstats();
    } finally {
      await this.stop(procs);
    }
    report('idle', { value: commands / elapsed, unit: 'commands/s', cpu_percent: 100 * cpu / elapsed });
  }
}

async function main(argv) {
  const args = parseArgs(argv);
  const [scenario] = args.positional;
  if (scenario === 'worker') {
    await runWorker(args.url, args.concurrency || 50);
    return;
  }
  if (!SCENARIOS.includes(scenario) || !args.url) {
    process.stderr.write(`usage: node adapter.mjs {${SCENARIOS.join(',')}} --url URL ` +
      '[--n N] [--processes P] [--concurrency C]\n');
    process.exit(2);
  }
  const adapter = new BullMQNodeAdapter(args.url);
  let code = 0;
  try {
    await adapter.run(scenario, args.n, args.processes, args.concurrency);
  } catch (err) {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    code = 1;
  } finally {
    await adapter.close();
  }
  process.exitCode = code;
  process.exit(code);
}

main(process.argv.slice(2));
