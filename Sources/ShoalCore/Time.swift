/// A point in time as a machine sees it: nanoseconds on a monotonic clock. Real peers pass their
/// monotonic clock; the simulator passes its virtual clock. Machines never read a clock themselves.
public struct Instant: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static let zero = Instant(nanoseconds: 0)
    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, d: Interval) -> Instant { Instant(nanoseconds: a.nanoseconds &+ d.nanoseconds) }
    public static func - (a: Instant, b: Instant) -> Interval { Interval(nanoseconds: a.nanoseconds &- b.nanoseconds) }
    public var description: String { Interval(nanoseconds: nanoseconds).description }
}

/// A length of time in nanoseconds.
public struct Interval: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static let zero = Interval(nanoseconds: 0)
    public static func microseconds(_ n: Int64) -> Interval { Interval(nanoseconds: n * 1_000) }
    public static func milliseconds(_ n: Int64) -> Interval { Interval(nanoseconds: n * 1_000_000) }
    public static func seconds(_ n: Int64) -> Interval { Interval(nanoseconds: n * 1_000_000_000) }
    public static func < (a: Interval, b: Interval) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Interval, b: Interval) -> Interval { Interval(nanoseconds: a.nanoseconds &+ b.nanoseconds) }
    public static func * (a: Interval, k: Int64) -> Interval { Interval(nanoseconds: a.nanoseconds &* k) }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    /// Whole units where exact (`5s`, `200ms`, `50µs`); otherwise seconds with milliseconds from
    /// one millisecond up (`12.660s`), else nanoseconds.
    public var description: String {
        let n = nanoseconds
        if n % 1_000_000_000 == 0 { return "\(n / 1_000_000_000)s" }
        if n >= 1_000_000_000 || n <= -1_000_000_000 {
            let ms = abs(n % 1_000_000_000) / 1_000_000
            let padded = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
            return "\(n / 1_000_000_000).\(padded)s"
        }
        if n % 1_000_000 == 0 { return "\(n / 1_000_000)ms" }
        if n % 1_000 == 0 { return "\(n / 1_000)µs" }
        return "\(n)ns"
    }
}

/// Identifies a peer of the cluster. Real peers derive it from their public key; the simulator
/// numbers them.
public struct PeerID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public static func < (a: PeerID, b: PeerID) -> Bool { a.raw < b.raw }
    public var description: String { "p\(raw)" }
}
