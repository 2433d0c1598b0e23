import ArgumentParser
import Foundation
import ShoalCore
import ShoalExamples

/// `shoal bench codec`: encode and decode throughput of the binary value encoding for a
/// `[Double]`, a `Data` and the cross-correlation example's `Matrix` and `Tensor3`, beside a
/// `memcpy` of the same bytes measured in the same run (the ceiling); for `Data`, also its
/// `Codable` form one byte a call (what it took before the fast path); for the matrix, JSON.
struct BenchCodec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codec",
        abstract: "Binary value encoding: encode/decode GB/s of [Double], Data, Matrix and Tensor3 vs memcpy and JSON.")

    @Option(help: "Elements of the [Double] (default 8 Mi).") var doubles = 8 * 1024 * 1024
    @Option(help: "Bytes of the Data (default 64 MiB).") var dataBytes = 64 * 1024 * 1024
    @Option(help: "Bytes of the Data sent through its per-byte Codable form (default 4 MiB).")
    var perByteBytes = 4 * 1024 * 1024
    @Option(help: "Rows of the matrix and first extent of the tensor.") var rows = 4_950
    @Option(help: "Columns of the matrix and second extent of the tensor.") var cols = 101
    @Option(help: "Third extent of the tensor.") var depth = 2
    @Option(help: "Runs per measurement (the median is printed).") var runs = 7
    @Flag(help: "Skip the JSON comparison (slow for big shapes).") var noJson = false

    /// Largest element count of one benchmark value: 512 Mi doubles (4 GiB), plenty for a bench.
    static let maxElements = 1 << 29
    /// Largest `Data`: 256 MiB, the decoder's default element limit (`maxElementCount`).
    static let maxDataBytes = 1 << 28

    func validate() throws {
        guard doubles >= 1 && doubles <= Self.maxElements else {
            throw refuse("--doubles must be 1 to \(Self.maxElements), got \(doubles)")
        }
        guard dataBytes >= 1 && dataBytes <= Self.maxDataBytes else {
            throw refuse("--data-bytes must be 1 to \(Self.maxDataBytes), got \(dataBytes)")
        }
        guard perByteBytes >= 1 && perByteBytes <= Self.maxDataBytes else {
            throw refuse("--per-byte-bytes must be 1 to \(Self.maxDataBytes), got \(perByteBytes)")
        }
        guard rows >= 1 && rows <= Self.maxElements else {
            throw refuse("--rows must be 1 to \(Self.maxElements), got \(rows)")
        }
        guard cols >= 1 && cols <= Self.maxElements else {
            throw refuse("--cols must be 1 to \(Self.maxElements), got \(cols)")
        }
        guard depth >= 1 && depth <= Self.maxElements else {
            throw refuse("--depth must be 1 to \(Self.maxElements), got \(depth)")
        }
        let (rc, o1) = rows.multipliedReportingOverflow(by: cols)
        let (rcd, o2) = rc.multipliedReportingOverflow(by: depth)
        guard !o1 && !o2 && rcd <= Self.maxElements else {
            throw refuse(
                "--rows × --cols × --depth must be at most \(Self.maxElements), got \(rows) × \(cols) × \(depth)")
        }
        guard runs >= 1 && runs <= 1000 else { throw refuse("--runs must be 1 to 1000, got \(runs)") }
    }

    func run() async throws {
        var rng = SeededGenerator(seed: 9)
        func randomDoubles(_ n: Int) -> [Double] { (0..<n).map { _ in rng.nextUnitDouble() * 2 - 1 } }

        let array = randomDoubles(doubles)
        let matrix = Matrix(rows: rows, cols: cols, values: randomDoubles(rows * cols))
        let tensor = Tensor3(rows, cols, depth, values: randomDoubles(rows * cols * depth))
        print("binary value encoding, median of \(runs) runs; memcpy = same byte count copied in the same run")
        try measure("[Double] \(doubles)", array, payloadBytes: doubles * 8)
        let data = randomBytes(dataBytes, &rng)
        try measure("Data \(dataBytes)", data, payloadBytes: dataBytes)
        try measure(
            "Data \(perByteBytes) per byte (its Codable form, no fast path)", PerByteData(data.prefix(perByteBytes)),
            payloadBytes: perByteBytes)
        try measure("Matrix \(rows)×\(cols)", matrix, payloadBytes: rows * cols * 8)
        try measure("Tensor3 \(rows)×\(cols)×\(depth)", tensor, payloadBytes: rows * cols * depth * 8)
        if !noJson { try measureJSON(matrix, payloadBytes: rows * cols * 8) }
    }

    private func randomBytes(_ n: Int, _ rng: inout SeededGenerator) -> Data {
        var data = Data(count: n)
        data.withUnsafeMutableBytes { buffer in
            var i = 0
            while i < n {
                var word = rng.next()
                let k = min(8, n - i)
                withUnsafeBytes(of: &word) {
                    buffer.baseAddress!.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: k)
                }
                i += k
            }
        }
        return data
    }

    /// Median seconds of `body` over `runs` runs.
    private func median(_ body: () throws -> Void) rethrows -> Double { try medianSeconds(runs: runs, body) }

    /// Seconds to copy `bytes` into a fresh array, as the encoder and decoder must (allocate, copy).
    private func memcpySeconds(_ bytes: [UInt8]) -> Double {
        var sink = 0
        let t = median {
            let copy = [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, n in
                bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
                n = bytes.count
            }
            sink &+= Int(copy[copy.count / 2])
        }
        if sink == -1 { print("") }  // keeps the copy observable
        return t
    }

    private func gbps(_ bytes: Int, _ seconds: Double) -> Double { Double(bytes) / seconds / 1e9 }
    /// GB/s, or MB/s below 0.1 GB/s (the per-byte path).
    private func rate(_ gbps: Double) -> String {
        gbps >= 0.1 ? "\(format(gbps, 2)) GB/s" : "\(format(gbps * 1000, 1)) MB/s"
    }
    private func ratio(_ r: Double) -> String { format(r, r >= 0.1 ? 2 : 4) }

    private func measure<T: Codable & Equatable>(_ name: String, _ value: T, payloadBytes: Int) throws {
        let encoder = BinaryEncoder()
        let decoder = BinaryDecoder()
        let encoded = try encoder.encode(value)
        guard try decoder.decode(T.self, from: encoded) == value else {
            throw ValidationError("\(name): the decoded value differs from the encoded one")
        }
        var size = 0
        let encodeSeconds = try median { size &+= try encoder.encode(value).count }
        var last: T?
        let decodeSeconds = try median { last = try decoder.decode(T.self, from: encoded) }
        let same = last == value
        let reference = memcpySeconds(encoded)
        let refRate = gbps(encoded.count, reference)
        let enc = gbps(encoded.count, encodeSeconds)
        let dec = gbps(encoded.count, decodeSeconds)
        print(
            "\(name): \(encoded.count) bytes (\(encoded.count - payloadBytes) over the raw values); "
                + "encode \(rate(enc)) (\(format(encodeSeconds * 1000, 2)) ms), "
                + "decode \(rate(dec)) (\(format(decodeSeconds * 1000, 2)) ms); "
                + "memcpy \(rate(refRate)); "
                + "ratio encode \(ratio(enc / refRate)), decode \(ratio(dec / refRate))"
                + (same && size > 0 ? "" : " (decode check failed)"))
    }

    private func measureJSON(_ matrix: Matrix, payloadBytes: Int) throws {
        let binary = BinaryEncoder()
        let encoded = try binary.encode(matrix)
        let binaryEncode = median { _ = try? binary.encode(matrix) }
        let binaryDecode = median { _ = try? BinaryDecoder().decode(Matrix.self, from: encoded) }
        let json = try JSONEncoder().encode(matrix)
        let jsonEncode = median { _ = try? JSONEncoder().encode(matrix) }
        let jsonDecode = median { _ = try? JSONDecoder().decode(Matrix.self, from: json) }
        guard try JSONDecoder().decode(Matrix.self, from: json) == matrix else {
            throw ValidationError("JSON round trip of the matrix differs")
        }
        print(
            "JSON Matrix \(matrix.rows)×\(matrix.cols): \(json.count) bytes; "
                + "encode \(format(jsonEncode * 1000, 2)) ms "
                + "(\(format(gbps(payloadBytes, jsonEncode), 3)) GB/s of values), "
                + "decode \(format(jsonDecode * 1000, 2)) ms (\(format(gbps(payloadBytes, jsonDecode), 3)) GB/s); "
                + "binary is \(format(jsonEncode / binaryEncode, 1))× faster to encode, "
                + "\(format(jsonDecode / binaryDecode, 1))× to decode")
    }
}

/// `Data` through its own `Codable` conformance, one `UInt8` a container call: the same bytes as
/// the fast path, the speed `Data` had before it.
private struct PerByteData: Codable, Equatable {
    var data: Data
    init(_ data: Data) { self.data = data }
    func encode(to encoder: any Encoder) throws { try data.encode(to: encoder) }
    init(from decoder: any Decoder) throws { data = try Data(from: decoder) }
}
