/**
 * `node bench/dist/floors.js [--rounds=N] [--seconds=S]`: the HTTP floors under Keybrake's proxy
 * route, side by side in one run against one mock upstream: the Node pass-through (node:http +
 * undici, passthrough.ts) and the same behind a bare fastify route (fastify-passthrough.ts). Each
 * run of one alternates with the same run of the other; every figure is the median over the
 * rounds. Prints CPU seconds per 1,000 calls, p50 in sequence and the peak at 64 connections.
 */
import { join } from 'node:path';
import { runLoad, type LoadResult } from './load.js';
import { cpuSeconds, processTree, startService, type Service } from './processes.js';
import { DIST, paymentTarget, type Target } from './variants.js';

function option(name: string, fallback: number): number {
  const value = process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  return value === undefined ? fallback : Number(value);
}
const rounds = option('rounds', 5);
const seconds = option('seconds', 3);

async function startListening(
  name: string,
  script: string,
  args: string[],
): Promise<{ service: Service; url: string }> {
  const service = await startService(name, process.execPath, [join(DIST, script), ...args], {
    ready: /^listening \d+/,
  });
  const port = /^listening (\d+)/.exec(service.output.find((line) => line.startsWith('listening')) ?? '')?.[1];
  return { service, url: `http://127.0.0.1:${port}` };
}

interface Floor {
  readonly name: string;
  readonly service: Service;
  readonly target: Target;
  cpu: number;
  requests: number;
  readonly sequential: LoadResult[];
  readonly peak: LoadResult[];
}

function median(values: number[]): number {
  values.sort((a, b) => a - b);
  const half = Math.floor(values.length / 2);
  return values.length % 2 === 1 ? values[half]! : (values[half - 1]! + values[half]!) / 2;
}

async function main(): Promise<void> {
  const upstream = await startListening('upstream', 'upstream.js', ['0']);
  const floors: Floor[] = [];
  try {
    for (const [name, script] of [
      ['node pass-through', 'passthrough.js'],
      ['fastify pass-through', 'fastify-passthrough.js'],
    ] as const) {
      const started = await startListening(name, script, ['0', upstream.url]);
      floors.push({
        name,
        service: started.service,
        target: paymentTarget(started.url, '/v1/payment_intents'),
        cpu: 0,
        requests: 0,
        sequential: [],
        peak: [],
      });
    }
    for (const floor of floors) await runLoad([floor.target], { durationSeconds: 1, connections: 16 });
    for (let round = 0; round < rounds; round += 1) {
      for (const [run, connections] of [
        ['sequential', 1],
        ['peak', 64],
      ] as const) {
        const order = round % 2 === 0 ? floors : [...floors].reverse();
        for (const floor of order) {
          const pids = processTree(floor.service.child.pid!);
          const before = cpuSeconds(pids);
          const load = await runLoad([floor.target], { durationSeconds: seconds, connections });
          floor.cpu += cpuSeconds(pids) - before;
          floor.requests += load.requests;
          floor[run].push(load);
          process.stderr.write(
            `  ${floor.name} ${run} (round ${round + 1}/${rounds}): ${load.requestsPerSecond.toFixed(0)} req/s, p50 ${load.p50} ms\n`,
          );
        }
      }
    }
    for (const floor of floors) {
      process.stdout.write(
        `${floor.name}: CPU ${((floor.cpu / floor.requests) * 1000).toFixed(3)} s/1k calls, ` +
          `p50 in sequence ${median(floor.sequential.map((load) => load.p50)).toFixed(3)} ms, ` +
          `peak@64 ${median(floor.peak.map((load) => load.requestsPerSecond)).toFixed(0)} req/s\n`,
      );
    }
  } finally {
    for (const floor of floors) await floor.service.stop();
    await upstream.service.stop();
  }
}

await main();
