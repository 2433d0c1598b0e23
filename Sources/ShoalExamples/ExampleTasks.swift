import Foundation
import Shoal

/// Registered tasks that example workflow files call with `task: name`.
public enum ExampleTasks {
    /// Arguments of `wordCount`.
    public struct WordCountArgs: Codable, Sendable {
        /// Words shorter than this are not counted.
        public var minLength: Int = 1
    }

    /// Counts the words of its one input and writes `word count` lines, most frequent first
    /// (ties by word), to its one output.
    public static let wordCount = TaskDefinition<WordCountArgs, Void>("wordCount") { args, context in
        let text = String(decoding: try context.inputBytes(at: 0), as: UTF8.self)
        var counts: [Substring: Int] = [:]
        for word in text.split(whereSeparator: { !$0.isLetter && !$0.isNumber && $0 != "'" })
        where word.count >= args.minLength {
            counts[word, default: 0] += 1
        }
        let lines = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key) \($0.value)\n" }.joined()
        let out = (0..<context.parameterCount).first { context.direction(at: $0) == .out }
        guard let out else { throw TaskContextError(task: "wordCount", message: "needs one out datum") }
        try context.setOutputBytes(at: out, Array(lines.utf8))
    }

    /// Arguments of `empty` (none).
    public struct NoArgs: Codable, Sendable {}

    /// Does nothing with what it reads: the task the throughput benchmarks run (`shoal bench
    /// peers`), so what is measured is the engine's path, not a body.
    public static let empty = TaskDefinition<NoArgs, Void>("empty") { _, _ in }

    /// Arguments of `spin`.
    public struct SpinArgs: Codable, Sendable {
        /// Task Bench kernel iterations (`TaskBench.kernel`).
        public var iterations: Int = 0
    }

    /// Task Bench's compute-bound kernel as a registered task for workflow files: reads its inputs
    /// (their first 8 bytes seed the kernel), runs `iterations` iterations and writes the 8-byte
    /// result to each output. What `shoal bench peers --metg` runs across peers.
    public static let spin = TaskDefinition<SpinArgs, Void>("spin") { args, context in
        var seed = 1.0
        for i in 0..<context.parameterCount where context.direction(at: i).reads {
            let bytes = try context.inputBytes(at: i)
            if bytes.count >= 8 {
                seed += Double(bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } & 0xFFFF) * 1e-9
            }
        }
        var out = TaskBench.kernel(iterations: args.iterations, seed: seed.truncatingRemainder(dividingBy: 1) + 1)
        let bytes = withUnsafeBytes(of: &out) { Array($0) }
        for i in 0..<context.parameterCount where context.direction(at: i).writes {
            try context.setOutputBytes(at: i, bytes)
        }
    }

    /// Arguments of `fill`.
    public struct FillArgs: Codable, Sendable {
        /// Bytes written to each output (at most 1 GiB).
        public var bytes: Int = 0
        /// Seeds the bytes: two seeds give two different values of the same size.
        public var seed: UInt64 = 0
    }

    /// `count` pseudo-random bytes: the little-endian words of a 64-bit LCG started from
    /// `seed ^ 0x9E3779B97F4A7C15` (what `fill` writes, and `shoal bench transport`'s values).
    public static func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var g = seed ^ 0x9E37_79B9_7F4A_7C15
        bytes.withUnsafeMutableBytes { raw in
            var i = 0
            while i < raw.count {
                g = g &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let word = g.littleEndian
                let n = min(8, raw.count - i)
                withUnsafeBytes(of: word) { w in raw.baseAddress!.advanced(by: i).copyMemory(from: w.baseAddress!, byteCount: n) }
                i += n
            }
        }
        return bytes
    }

    /// Writes `bytes` pseudo-random bytes (`pseudoRandomBytes`, seeded by `seed`) to each output:
    /// a large value made at one peer, what `shoal bench move` moves to another.
    public static let fill = TaskDefinition<FillArgs, Void>("fill") { args, context in
        guard (0...(1 << 30)).contains(args.bytes) else {
            throw TaskContextError(task: "fill", message: "bytes must be 0 to 1 GiB, got \(args.bytes)")
        }
        let bytes = pseudoRandomBytes(count: args.bytes, seed: args.seed)
        for i in 0..<context.parameterCount where context.direction(at: i).writes {
            try context.setOutputBytes(at: i, bytes)
        }
    }

    /// Arguments of `pause`.
    public struct PauseArgs: Codable, Sendable {
        /// How long the task waits, in milliseconds (at most 10 minutes).
        public var milliseconds: Int = 0
    }

    /// Reads its inputs and waits `milliseconds` without using a core: a task that takes time but
    /// leaves the machine to what is measured beside it (`shoal bench move`'s readers, while the
    /// value crosses).
    public static let pause = TaskDefinition<PauseArgs, Void>("pause") { args, context in
        guard (0...600_000).contains(args.milliseconds) else {
            throw TaskContextError(task: "pause", message: "milliseconds must be 0 to 600000, got \(args.milliseconds)")
        }
        for i in 0..<context.parameterCount where context.direction(at: i).reads { _ = try context.inputBytes(at: i) }
        Thread.sleep(forTimeInterval: Double(args.milliseconds) / 1_000)
    }

    /// The examples' programs as scenario shapes (`ScenarioFile.load(path:registry:shapes:)`).
    public static let scenarioShapes = [CrossCorrelationWorkflow.scenarioShape]

    /// Every task the examples register.
    public static var registry: TaskRegistry {
        var r = TaskRegistry()
        r.register(wordCount)
        r.register(empty)
        r.register(spin)
        r.register(fill)
        r.register(pause)
        r.register(CrossCorrelationWorkflow.generateSpikeTrains)
        r.register(CrossCorrelationWorkflow.ccSurrogateRangeTask)
        r.register(CrossCorrelationWorkflow.gatherTask)
        return r
    }
}
