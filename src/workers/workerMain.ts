/**
 * A worker thread's entry: one more event loop serving the same listeners as the main thread
 * (bound with reusePort, so the kernel spreads connections over the threads). It runs the
 * data plane only: no admin or health server, no file watching. What is per instance comes
 * from the main thread: the identity (TLS material, swapped on every reload), the key ring,
 * the session ticket keys and the replay cache (one SharedArrayBuffer). What it observes goes
 * back: audit events (the main thread's single writer keeps the hash chain), failed handshakes
 * and anomalies (the admin API's recent lists), and its metrics registry on request.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Registry } from '../telemetry/promClient.ts';
import { systemClock } from '../core/clock.ts';
import { createLogger } from '../telemetry/logger.ts';
import { createMetrics } from '../telemetry/metrics.ts';
import { initialiseSeries } from '../telemetry/metricSeries.ts';
import { tlsPolicy } from '../tls/policy.ts';
import { attachSharedReplayCache } from '../integrity/sharedReplayCache.ts';
import { VERSION } from '../version.ts';
import { collectStartupGarbage } from '../core/startupGarbage.ts';
import { startWorkerDataPlane } from './workerDataPlane.ts';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';

const port = parentPort;
if (port === null) throw new Error('src/workers/workerMain.ts runs as a worker thread');
const init = workerData as WorkerInit;

const send = (m: FromWorker): void => port.postMessage(m);
// log lines go to the main thread, whose logger's destination writes them (one writer for stdout)
const log = createLogger({
  level: init.config.log.level,
  destination: { write: (line: string) => send({ type: 'log', line }) },
}).child({ worker: init.index });
const registry = new Registry();
const metrics = createMetrics(registry);
initialiseSeries(metrics, init.config, VERSION);
const clock = systemClock;

try {
  const plane = await startWorkerDataPlane(init, {
    log,
    metrics,
    clock,
    policy: tlsPolicy(init.config.tls.minVersion),
    replay: init.replay === null ? null : attachSharedReplayCache(init.replay, clock),
    send,
  });
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'material':
        plane.setMaterial(m.material);
        return;
      case 'keys':
        plane.setKeys(m.keys);
        return;
      case 'ticketKeys':
        plane.setTicketKeys(m.keys);
        return;
      case 'config':
        plane.setConfig(m.config);
        log.level = m.config.log.level;
        return;
      case 'drain':
        void plane.drain(m.mode, m.deadline).then((clean) => send({ type: 'reply', id: m.id, value: clean }));
        return;
      case 'metrics':
        void registry.getMetricsAsJSON().then((value) => send({ type: 'reply', id: m.id, value }));
        return;
      case 'status':
        send({ type: 'reply', id: m.id, value: plane.status() });
        return;
      case 'routes':
        send({ type: 'reply', id: m.id, value: plane.routes() });
        return;
      case 'stop':
        plane.close();
        log.flush(() => send({ type: 'reply', id: m.id, value: true }));
        return;
    }
  });
  send({ type: 'ready' });
  collectStartupGarbage();
} catch (err) {
  const problems = (err as { problems?: readonly string[] }).problems ?? [];
  send({ type: 'failed', message: (err as Error).message, problems: [...problems] });
}
