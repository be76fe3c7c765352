/**
 * Inert stand-ins for the Python objects a pickle describes but setar never builds: classes and
 * functions outside the unpickler's allow-list, and whatever calling or instantiating them would
 * make (a scheduler object, an optimizer object, a numpy scalar, or `os.system(...)` in a hostile
 * file). Only names and the pickled arguments and state are kept; nothing is imported, looked up
 * or called, so reading a placeholder can never run code. See `unpickle`'s `placeholders` option.
 */

/** A global (`module.name`) the pickle names that is not on the allow-list. */
export class PythonGlobal {
  constructor(readonly module: string, readonly name: string) {}

  /** `module.name`, e.g. `torch.optim.lr_scheduler.CosineAnnealingLR`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** How the pickle asked for the object: a call (REDUCE) or `cls.__new__(cls, *args)` (NEWOBJ, NEWOBJ_EX). */
export type PythonObjectOrigin = 'REDUCE' | 'NEWOBJ' | 'NEWOBJ_EX';

/**
 * What the pickle would have built by calling `callee` with `args` — recorded, not done. Later
 * opcodes that would mutate the object are recorded too: BUILD's argument as `state` (an
 * instance `__dict__`, or a `(dict, slots)` tuple), SETITEM(S) into `items` (dict subclasses such
 * as `collections.defaultdict`), APPEND(S) into `elements` (list subclasses).
 */
export class PythonObject {
  /** BUILD's argument, if any (what `__setstate__` would receive). */
  state: unknown = undefined;
  /** Items set on the object by SETITEM / SETITEMS, in order. */
  readonly items = new Map<unknown, unknown>();
  /** Elements appended by APPEND / APPENDS, in order. */
  readonly elements: unknown[] = [];

  constructor(
    readonly callee: PythonGlobal | PythonObject,
    readonly args: readonly unknown[],
    readonly origin: PythonObjectOrigin,
    readonly kwargs: ReadonlyMap<unknown, unknown> | null = null,
  ) {}

  /** The global that was called or instantiated, e.g. `torch.optim.sgd.SGD` (for a call of a call, the innermost global). */
  get type(): string {
    return this.callee instanceof PythonGlobal ? this.callee.qualified : this.callee.type;
  }

  /** An attribute from the recorded state (`state['name']`, or the slots of a `(dict, slots)` state); undefined if absent. */
  attribute(name: string): unknown {
    const s = this.state;
    const dicts = Array.isArray(s) && s.length === 2 ? s : [s];
    for (const d of dicts) if (d instanceof Map && d.has(name)) return d.get(name);
    return undefined;
  }

  /** For messages: `a torch.optim.sgd.SGD object` or `a call of os.system (not run)`. */
  describe(): string {
    return this.origin === 'REDUCE' ? `a call of ${this.type} (not run)` : `a ${this.type} object`;
  }
}
