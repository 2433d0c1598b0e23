import Histogram
import ShoalCore

/// Requests of one kind in flight, by request id, and how long their answers took: the steal
/// round trips and the data fetches a peer reports in its status. The table is bounded: when it
/// is full, requests unanswered for longer than `forgetAfter` are forgotten, and a new one is not
/// timed if none was.
struct RoundTrips {
    private var inFlight: [UInt64: Instant] = [:]
    /// Answered round trips, in microseconds (HdrHistogram, 3 significant digits, up to a minute).
    private(set) var micros = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    /// The bytes the answers carried and the time they took in all (a fetch's throughput).
    private(set) var bytes: UInt64 = 0
    private(set) var totalMicros: UInt64 = 0
    let capacity: Int
    let forgetAfter: Interval

    init(capacity: Int = 256, forgetAfter: Interval = .seconds(10)) {
        self.capacity = capacity
        self.forgetAfter = forgetAfter
    }

    var count: UInt64 { micros.totalCount }
    func percentile(_ p: Double) -> UInt64 { count > 0 ? micros.valueAtPercentile(p) : 0 }

    mutating func sent(_ rid: UInt64, at now: Instant) {
        if inFlight.count >= capacity {
            inFlight = inFlight.filter { now - $0.value < forgetAfter }
            if inFlight.count >= capacity { return }
        }
        inFlight[rid] = now
    }

    /// The answer to `rid` arrived, carrying `bytes` (a refusal or a miss: `nil`, not timed).
    mutating func answered(_ rid: UInt64, bytes carried: UInt64?, at now: Instant) {
        guard let sent = inFlight.removeValue(forKey: rid), let carried else { return }
        let us = UInt64(max(0, (now - sent).nanoseconds / 1_000))
        _ = micros.record(us)
        bytes += carried
        totalMicros += us
    }
}
