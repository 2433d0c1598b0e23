/// A growable FIFO ring buffer: amortised O(1) append and popFirst, no per-element allocation.
public struct RingBuffer<Element>: Sendable where Element: Sendable {
    private var storage: [Element?] = []
    private var head = 0
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    public mutating func append(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) & (storage.count - 1)] = element
        count += 1
    }

    public mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let e = storage[head]
        storage[head] = nil
        head = (head + 1) & (storage.count - 1)
        count -= 1
        return e
    }

    public var first: Element? { count > 0 ? storage[head] : nil }

    private mutating func grow() {
        let newCapacity = Swift.max(16, storage.count * 2)
        var bigger = [Element?](repeating: nil, count: newCapacity)
        for i in 0..<count { bigger[i] = storage[(head + i) & (storage.count - 1)] }
        storage = bigger
        head = 0
    }
}
