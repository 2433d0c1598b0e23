/// The renaming state of one datum: its newest version and the commutative or concurrent group
/// open on it, if any.
struct DatumVersions: Sendable, Hashable {
    /// The newest version, or `VersionID.none` while nothing defined the datum.
    var current = VersionID.none
    /// The kind of the open group (`commutative` or `concurrent`), or nil.
    var groupKind: Direction? = nil
    /// The version before the open group: what its members read.
    var groupBase = VersionID.none

    init() {}
}

/// What the COMPSs renaming needs from the structure it feeds: storage for each datum's renaming
/// state, and the bookkeeping of versions and readers.
///
/// The rule itself (which version an access reads, which it writes, when a group opens and
/// closes) is written once, in the `rename` / `closeGroup` / `define` extension methods below.
/// It has two conformers:
/// - `DataflowGraph`, the local scheduler, whose versions are reference-counted slots that
///   are released and reused, with waiters and pins;
/// - `WorkflowPlanBuilder`, the cluster plan, whose versions are append-only numbers in flat
///   arrays that any peer can rebuild from the calls alone.
///
/// A protocol with the rule in an extension, rather than a `Renaming` value calling back into a
/// ledger, because the state lives inside each conformer's own per-datum storage (the graph keeps
/// its commutative locks beside it) and Swift forbids a stored property to call back into the
/// value that holds it. Calls are statically dispatched and specialised per conformer, so the
/// local graph pays nothing for the abstraction.
protocol VersionLedger {
    /// Who reads a version (a task slot, a plan's task index).
    associatedtype Reader
    /// Where the conformer's reactions go (the graph's directive buffer).
    associatedtype Effects

    /// The renaming state of `datum`; the conformer has made room for `datum` before any rule runs.
    subscript(versionsOf datum: DatumID) -> DatumVersions { get set }

    /// A new pending version of `datum` with one writer to come. `opensGroup`: it is an open
    /// group's version, not final until the group closes and its members finish.
    mutating func makeVersion(of datum: DatumID, opensGroup: Bool, effects: inout Effects) -> VersionID
    /// `reader` will read `version` of `datum`.
    mutating func addReader(_ reader: Reader, of version: VersionID, datum: DatumID, effects: inout Effects)
    /// A new member of the open group whose version is `group`: one more writer.
    mutating func addGroupWriter(_ group: VersionID)
    /// An open group holds its base as a reader, so that a member submitted after every earlier
    /// one finished still finds it.
    mutating func holdGroupBase(_ base: VersionID)
    /// `old` is no longer its datum's newest version: no new reader can arrive.
    mutating func supersede(_ old: VersionID, effects: inout Effects)
    /// The group writing `group` (whose members read `base`) is closed: no member can join.
    mutating func groupClosed(_ group: VersionID, base: VersionID, effects: inout Effects)
}

/// One access after renaming: the version read (nil for `out`) and the version written (nil for
/// `in`). For a group member, `read` is the group's base and `written` the group's version.
struct Renamed: Sendable, Hashable {
    var read: VersionID?
    var written: VersionID?
}

extension VersionLedger {
    /// The COMPSs renaming of one access of `reader` to `datum`: every write makes a new version,
    /// a read reads the newest one; a run of consecutive `commutative` (or `concurrent`) accesses
    /// forms a group that writes one version, read by every later access. Any other access, a
    /// wait or a definition closes the group.
    ///
    /// Returns nil, changing nothing, when the access reads a datum that nothing defined.
    @inline(__always)
    mutating func rename(
        _ datum: DatumID, _ direction: Direction, by reader: Reader, effects: inout Effects
    ) -> Renamed? {
        var state = self[versionsOf: datum]
        if direction.reads && state.current == .none { return nil }
        switch direction {
        case .in:
            closeGroup(datum, effects: &effects)
            state = self[versionsOf: datum]
            addReader(reader, of: state.current, datum: datum, effects: &effects)
            return Renamed(read: state.current, written: nil)
        case .out:
            closeGroup(datum, effects: &effects)
            let v = makeVersion(of: datum, opensGroup: false, effects: &effects)
            replaceCurrent(of: datum, with: v, effects: &effects)
            return Renamed(read: nil, written: v)
        case .inout:
            closeGroup(datum, effects: &effects)
            let r = self[versionsOf: datum].current
            // The read is counted before superseding, or the old version could be released now.
            addReader(reader, of: r, datum: datum, effects: &effects)
            let v = makeVersion(of: datum, opensGroup: false, effects: &effects)
            replaceCurrent(of: datum, with: v, effects: &effects)
            return Renamed(read: r, written: v)
        case .commutative, .concurrent:
            if state.groupKind == direction {
                addGroupWriter(state.current)
                addReader(reader, of: state.groupBase, datum: datum, effects: &effects)
                return Renamed(read: state.groupBase, written: state.current)
            }
            closeGroup(datum, effects: &effects)
            let base = self[versionsOf: datum].current
            addReader(reader, of: base, datum: datum, effects: &effects)
            holdGroupBase(base)
            let g = makeVersion(of: datum, opensGroup: true, effects: &effects)
            replaceCurrent(of: datum, with: g, effects: &effects)
            self[versionsOf: datum].groupKind = direction
            self[versionsOf: datum].groupBase = base
            return Renamed(read: base, written: g)
        }
    }

    /// Ends the open group on `datum`, if any: its version becomes final once its members finish.
    @inline(__always)
    mutating func closeGroup(_ datum: DatumID, effects: inout Effects) {
        let state = self[versionsOf: datum]
        guard state.groupKind != nil else { return }
        self[versionsOf: datum].groupKind = nil
        self[versionsOf: datum].groupBase = .none
        groupClosed(state.current, base: state.groupBase, effects: &effects)
    }

    /// Makes `v` (a version just made by `makeVersion`) the newest version of `datum`.
    @inline(__always)
    mutating func replaceCurrent(of datum: DatumID, with v: VersionID, effects: inout Effects) {
        let old = self[versionsOf: datum].current
        self[versionsOf: datum].current = v
        if old != .none { supersede(old, effects: &effects) }
    }
}
