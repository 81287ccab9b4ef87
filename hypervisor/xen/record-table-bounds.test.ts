/**
 * record-table.ts on a region of its own: where each record's words and live
 * bits sit, the header after the records, ids counting up from 1 and never
 * reused, and one view per machine (designRegionView).
 */
import { describe, expect, it } from 'vitest';
import { testMachine } from '../../tests/test-machine.js';
import { P2M_TABLE_ENTRIES } from '../layout/constants.js';
import { designRegionView, RecordTable } from './record-table.js';

const COUNT = 3;
const REC_WORDS = 6;
const LIVE_MAP = 2; // words 2…5: 128 live bits a record

describe('RecordTable', () => {
  const fresh = (extraWords = 0): { t: RecordTable; sab: SharedArrayBuffer } => {
    const sab = new SharedArrayBuffer((RecordTable.words(COUNT, REC_WORDS) + extraWords) * 4);
    return { t: new RecordTable(sab, COUNT, REC_WORDS, LIVE_MAP), sab };
  };

  it('takes count × recWords words and a header of 4, from the region start', () => {
    expect(RecordTable.words(COUNT, REC_WORDS)).toBe(22);
    expect(RecordTable.words(0, 9)).toBe(4);
    const { t } = fresh(10);
    expect(t.w.length).toBe(22);
    expect(t.w.byteOffset).toBe(0);
  });

  it('a field of a record is word r × recWords + f', () => {
    const { t } = fresh();
    t.set(2, 1, 77);
    t.set(0, 0, 5);
    expect(t.w[2 * REC_WORDS + 1]).toBe(77);
    expect(t.w[0]).toBe(5);
    expect(t.at(2, 1)).toBe(77);
    expect(t.at(1, 1)).toBe(0);
    expect(t.at(0, 0)).toBe(5);
  });

  it('live bits: bit i of word liveMap + i / 32, set and cleared one at a time', () => {
    const { t } = fresh();
    for (const i of [0, 31, 32, 63, 100, 127]) {
      expect(t.live(1, i)).toBe(false);
      t.setLive(1, i, true);
      expect(t.live(1, i)).toBe(true);
    }
    const base = 1 * REC_WORDS + LIVE_MAP;
    expect([t.w[base], t.w[base + 1], t.w[base + 2], t.w[base + 3]]).toEqual([1 | (1 << 31), 1 | (1 << 31), 0, (1 << 4) | (1 << 31)]);
    expect(t.w[base + 3]! >>> 0).toBe(0x80000010);
    expect(t.live(1, 30)).toBe(false);
    expect(t.live(1, 1)).toBe(false);
    expect(t.live(0, 0)).toBe(false);
    expect(t.live(2, 0)).toBe(false);
    t.setLive(1, 31, false);
    expect(t.live(1, 31)).toBe(false);
    expect(t.live(1, 0)).toBe(true);
    t.setLive(1, 0, true); // set again: stays set
    expect(t.w[base]).toBe(1);
    t.setLive(1, 5, false); // clearing a clear bit changes nothing
    expect(t.w[base]).toBe(1);
    expect([t.w[0], t.w[1], t.at(1, 0), t.at(1, 1)]).toEqual([0, 0, 0, 0]);
  });

  it('ids count up from 1 in the header word after the records; issued are exactly 1…last', () => {
    const { t } = fresh();
    expect(t.issued(0)).toBe(false);
    expect(t.issued(1)).toBe(false);
    expect(t.nextId()).toBe(1);
    expect(t.nextId()).toBe(2);
    expect(t.w[COUNT * REC_WORDS]).toBe(2);
    expect([0, 1, 2, 3, -1, 1.5, NaN].map((id) => t.issued(id))).toEqual([false, true, true, false, false, false, false]);
    for (let r = 0; r < COUNT; r++) for (let f = 0; f < REC_WORDS; f++) expect(t.at(r, f)).toBe(0);
  });

  it('designRegionView: one view per machine over its design region, sized by its frames and p2m entries', () => {
    const seen: Array<[SharedArrayBuffer, number, number]> = [];
    class Probe {
      constructor(sab: SharedArrayBuffer, nr_frames: number, p2m_entries: number) {
        seen.push([sab, nr_frames, p2m_entries]);
      }
    }
    const view = designRegionView(Probe);
    const a = testMachine({ domains: [{ memory_pages: 4, privileged: true }] });
    const b = testMachine({ domains: [{ memory_pages: 4, privileged: true }], nr_frames: 512 });
    const va = view(a);
    expect(view(a)).toBe(va);
    const vb = view(b);
    expect(vb).not.toBe(va);
    expect(view(b)).toBe(vb);
    expect(seen).toEqual([
      [a.sabs.design, 1024, a.config.p2m_pool_pages * P2M_TABLE_ENTRIES],
      [b.sabs.design, 512, b.config.p2m_pool_pages * P2M_TABLE_ENTRIES],
    ]);
    expect(seen[0]![0]).toBe(a.sabs.design);
  });
});
