import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('../dist/demo/demo.js', import.meta.url));

describe('pnpm demo', () => {
  it('stops a 500-call fan-out at the $300 cap and says the upstream is a local sandbox', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [DEMO], { env: { PATH: process.env.PATH ?? '' } });
    expect(stdout).toContain('LOCAL SANDBOX');
    const charged = /Charged:\s+(\d+) calls, \$([\d.]+) \(the sandbox saw \$([\d.]+)\)/.exec(stdout);
    const refused = /Refused:\s+(\d+) calls with 429/.exec(stdout);
    expect(charged, stdout).not.toBeNull();
    expect(Number(charged![2])).toBeLessThanOrEqual(300);
    expect(Number(charged![2])).toBeGreaterThan(295);
    expect(charged![3]).toBe(charged![2]);
    expect(Number(charged![1]) + Number(refused![1])).toBe(500);
    expect(stdout).toMatch(/Audit:\s+500 records .*chain ok=true/);
  });
});
