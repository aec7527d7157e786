// What one build keeps while it runs (or one `lock`, or one image): the
// answers and work it must not do twice (a file hashed, a download in
// flight, the registry's address, the builder's bundle), and nothing beyond
// it. The command that runs the build makes one session and hands it on in
// the build's context; nothing of a build lives in module scope.
//
// Each module keeps its own part, of its own type, under a slot it declares
// once (`new SessionSlot(() => ...)`): the session knows no module's state.

/** A module's part of a build's session: made on its first use in that session. */
export class SessionSlot<T> {
  constructor(readonly create: () => T) {}
}

export class BuildSession {
  private readonly parts = new Map<SessionSlot<unknown>, unknown>();

  /** This session's part under `slot`, made on the first ask. */
  get<T>(slot: SessionSlot<T>): T {
    if (!this.parts.has(slot)) this.parts.set(slot, slot.create());
    return this.parts.get(slot) as T;
  }
}
