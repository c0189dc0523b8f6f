/**
 * When the claims of the event loop's turns go out (sharedState/claimBatch.ts): a lone claim in
 * its own turn, several claims of a busy turn together with the next turn's, a full batch at once.
 * The store here is a recorder answering every key as set; the store's own behaviour against a
 * real redis-server is test/shared-state.test.ts.
 */
import t from 'tap';
import { systemClock } from '../src/core/clock.ts';
import { BUSY_TURN, ClaimBatch, FULL_BATCH, SET, type ClaimVerdict } from '../src/sharedState/claimBatch.ts';

/** a batch whose commands are recorded (their keys) and answered at once, every key set */
function recorded(): { batch: ClaimBatch; commands: string[][]; answered: number[] } {
  const commands: string[][] = [];
  const answered: number[] = [];
  const batch = new ClaimBatch(
    (keys, _ttls, answer) => {
      commands.push(keys);
      answer(
        keys.map(() => SET),
        null,
      );
    },
    { answered: (count) => answered.push(count), failed: () => t.fail('no claim fails here') },
    systemClock,
  );
  return { batch, commands, answered };
}

/** the rest of this turn and its check phase (an immediate queued now runs after those queued before it) */
const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('a lone claim goes out in the turn it was made', async (t) => {
  const { batch, commands } = recorded();
  const verdicts: ClaimVerdict[] = [];
  batch.add('k1', 60_000, (v) => verdicts.push(v));
  t.same(commands, [], 'nothing is sent before the check phase');
  await endOfTurn();
  t.same(commands, [['k1']], 'one command at the check phase of its own turn');
  t.same(verdicts, ['fresh']);
});

t.test("a busy turn's claims wait for the next turn's and go with them, once", async (t) => {
  t.ok(BUSY_TURN <= 2 && FULL_BATCH > 5, 'turns of two and three claims are busy; five claims are not a full batch');
  const { batch, commands, answered } = recorded();
  const verdicts: string[] = [];
  for (const k of ['a', 'b', 'c']) batch.add(k, 60_000, (v) => verdicts.push(`${k}:${v}`));
  await endOfTurn();
  t.same(commands, [], 'three claims of one turn are held over its check phase');
  // the next turn brings two more
  batch.add('d', 60_000, (v) => verdicts.push(`d:${v}`));
  batch.add('e', 60_000, (v) => verdicts.push(`e:${v}`));
  await endOfTurn();
  t.same(commands, [['a', 'b', 'c', 'd', 'e']], 'one command for both turns');
  t.same(verdicts, ['a:fresh', 'b:fresh', 'c:fresh', 'd:fresh', 'e:fresh'], 'each claim told, in order');
  t.same(answered, [5], 'counted once, as one batch');
});

t.test('a held batch goes at the next check phase even when that turn brought nothing', async (t) => {
  const { batch, commands } = recorded();
  for (const k of ['a', 'b']) batch.add(k, 60_000, () => {});
  await endOfTurn();
  t.same(commands, []);
  await endOfTurn();
  t.same(commands, [['a', 'b']], 'not held a second time');
});

t.test('a full batch goes out in the turn it was made', async (t) => {
  const { batch, commands } = recorded();
  const keys = Array.from({ length: FULL_BATCH }, (_, i) => `k${i}`);
  for (const k of keys) batch.add(k, 60_000, () => {});
  await endOfTurn();
  t.same(commands, [keys], `${FULL_BATCH} claims: one command at once`);
});
