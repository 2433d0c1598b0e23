import ShoalCore

/// The simulator's agenda: events ordered by time, and events at the same time in the order they
/// were scheduled (FIFO tie-break), so a run is a pure function of its seed.
///
/// A binary min-heap of small keys (time, sequence number, payload slot); the payloads wait in a
/// slab of reusable slots, so sifting moves 24-byte keys, never payloads.
public struct EventQueue<Payload> {
    struct Key {
        var time: Int64
        var sequence: UInt64
        var slot: Int32

        @inline(__always) func precedes(_ other: Key) -> Bool {
            time != other.time ? time < other.time : sequence < other.sequence
        }
    }

    private var heap: [Key] = []
    private var payloads: [Payload?] = []
    private var freeSlots: [Int32] = []
    private var nextSequence: UInt64 = 0

    public init() {}

    public var count: Int { heap.count }
    public var isEmpty: Bool { heap.isEmpty }
    /// When the next event happens, if any.
    public var nextTime: Instant? { heap.first.map { Instant(nanoseconds: $0.time) } }

    public mutating func schedule(_ payload: Payload, at time: Instant) {
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
            payloads[Int(slot)] = payload
        } else {
            slot = Int32(payloads.count)
            payloads.append(payload)
        }
        let key = Key(time: time.nanoseconds, sequence: nextSequence, slot: slot)
        nextSequence &+= 1
        heap.append(key)
        heap.withUnsafeMutableBufferPointer { h in
            var i = h.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard key.precedes(h[parent]) else { break }
                h[i] = h[parent]
                i = parent
            }
            h[i] = key
        }
    }

    /// Removes and returns the earliest event.
    public mutating func pop() -> (time: Instant, payload: Payload)? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap.withUnsafeMutableBufferPointer { h in
                let n = h.count
                var i = 0
                while true {
                    let l = 2 * i + 1
                    guard l < n else { break }
                    var m = l
                    let r = l + 1
                    if r < n, h[r].precedes(h[l]) { m = r }
                    guard h[m].precedes(last) else { break }
                    h[i] = h[m]
                    i = m
                }
                h[i] = last
            }
        }
        let payload = payloads[Int(top.slot)].take()!
        freeSlots.append(top.slot)
        return (Instant(nanoseconds: top.time), payload)
    }
}
