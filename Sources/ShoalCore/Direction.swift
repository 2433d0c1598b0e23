/// How a task accesses one datum, as PyCOMPSs' directionality hints.
///
/// Every write makes a new version of the datum (COMPSs renaming), so only read-after-write
/// orders tasks:
/// - `in`: reads the current version.
/// - `out`: writes a new version without reading; later readers see it.
/// - `inout`: reads the current version and writes the next one.
/// - `commutative`: like `inout`, but the tasks of a consecutive run of commutative accesses to
///   one datum may run in any order, one at a time; later accesses see the result of all of them.
/// - `concurrent`: the tasks of a consecutive run of concurrent accesses share one instance of the
///   datum (the same file, or the same `Sendable` reference object) and may run at the same time;
///   later accesses wait for all of them.
public enum Direction: UInt8, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    case `in`
    case out
    case `inout`
    case commutative
    case concurrent

    /// Whether the access needs the datum's current value.
    public var reads: Bool { self != .out }
    /// Whether the access produces a new version of the datum.
    public var writes: Bool { self != .in }

    public var description: String {
        switch self {
        case .in: "in"
        case .out: "out"
        case .inout: "inout"
        case .commutative: "commutative"
        case .concurrent: "concurrent"
        }
    }

    public init?(name: String) {
        guard let d = Direction.allCases.first(where: { $0.description == name }) else { return nil }
        self = d
    }
}

extension Direction {
    /// The one direction equivalent to accessing a datum both as `self` and as `other` in one task
    /// (`in` + `out` = `inout`), or nil when the two cannot be combined (a group access mixed with
    /// any other).
    public func merged(with other: Direction) -> Direction? {
        if self == other { return self }
        switch (self, other) {
        case (.commutative, _), (_, .commutative), (.concurrent, _), (_, .concurrent): return nil
        default: return .inout
        }
    }
}

extension Direction {
    /// Whether consecutive accesses of this direction to one datum form a group (`commutative`,
    /// `concurrent`).
    public var isGroup: Bool { self == .commutative || self == .concurrent }
}
