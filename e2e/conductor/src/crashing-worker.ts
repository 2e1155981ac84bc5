/**
 * Test fixture, not part of the example: a `charge_customer` worker process that takes one task,
 * charges through the proxy, prints the PaymentIntent id, and is killed (SIGKILL) before it can
 * tell Conductor. What a worker pod evicted mid-task does.
 *
 * Environment: CONDUCTOR_SERVER_URL, KEYBRAKE_PROXY_URL.
 */
import { TaskHandler, createConductorClient } from '@io-orkes/conductor-javascript';
import { keybrakeWorker } from '@keybrake/conductor';
import { chargeCustomerTask } from './workers.js';

const client = await createConductorClient({ serverUrl: process.env.CONDUCTOR_SERVER_URL });
const handler = new TaskHandler({
  client,
  scanForDecorated: false,
  workers: [
    keybrakeWorker({
      taskDefName: 'charge_customer',
      concurrency: 1,
      pollInterval: 100,
      execute: async (task, keybrake) => {
        const output = await chargeCustomerTask(task, keybrake);
        process.stdout.write(
          `${JSON.stringify({ charged: output, referenceTaskName: task.referenceTaskName })}\n`,
          () => process.kill(process.pid, 'SIGKILL'),
        );
        return new Promise(() => {});
      },
    }),
  ],
});
await handler.startWorkers();
