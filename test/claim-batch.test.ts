/**
 * When the claims of the event loop's turns go out (sharedState/claimBatch.ts): a lone claim in
 * its own turn, several claims of a busy turn together with the next turn's, a full batch at once.
 * The store here is a recorder answering every key as set; the store's own behaviour against a
 * real redis-server is test/shared-state.test.ts.
 */
import t from 'tap';
import { systemClock } from '../src/core/clock.ts';
import {
  BUSY_TURN,
  ClaimBatch,
  FULL_BATCH,
  HOLD_TURNS,
  SET,
  type ClaimVerdict,
} from '../src/sharedState/claimBatch.ts';

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

t.test("a busy turn's claims wait for the next turns' claims and go with them, HOLD_TURNS turns at most", async (t) => {
  t.ok(
    BUSY_TURN <= 2 && FULL_BATCH > 3 + HOLD_TURNS,
    'a batch of two claims and up is busy; what these turns gather is not a full batch',
  );
  t.ok(HOLD_TURNS >= 1, 'a busy batch is held at least once');
  const { batch, commands, answered } = recorded();
  const verdicts: string[] = [];
  const keys = ['a', 'b', 'c'];
  for (const k of keys) batch.add(k, 60_000, (v) => verdicts.push(`${k}:${v}`));
  for (let turn = 1; turn <= HOLD_TURNS; turn++) {
    await endOfTurn();
    t.same(commands, [], `held over check phase ${turn}`);
    // the next turn brings one more
    const k = `n${turn}`;
    keys.push(k);
    batch.add(k, 60_000, (v) => verdicts.push(`${k}:${v}`));
  }
  await endOfTurn();
  t.same(commands, [keys], `one command for all ${HOLD_TURNS + 1} turns`);
  t.same(
    verdicts,
    keys.map((k) => `${k}:fresh`),
    'each claim told, in order',
  );
  t.same(answered, [keys.length], 'counted once, as one batch');
});

t.test('a held batch goes after HOLD_TURNS check phases even when those turns brought nothing', async (t) => {
  const { batch, commands } = recorded();
  for (const k of ['a', 'b']) batch.add(k, 60_000, () => {});
  for (let turn = 1; turn <= HOLD_TURNS; turn++) {
    await endOfTurn();
    t.same(commands, [], `held over check phase ${turn}`);
  }
  await endOfTurn();
  t.same(commands, [['a', 'b']], 'not held longer');
});

t.test('a full batch goes out in the turn it was made', async (t) => {
  const { batch, commands } = recorded();
  const keys = Array.from({ length: FULL_BATCH }, (_, i) => `k${i}`);
  for (const k of keys) batch.add(k, 60_000, () => {});
  await endOfTurn();
  t.same(commands, [keys], `${FULL_BATCH} claims: one command at once`);
});
