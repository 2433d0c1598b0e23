import Foundation

/// Element types this module writes to `.npy` files (little-endian where it matters).
public enum NpyDType: String, Codable, Sendable, Equatable, CaseIterable {
    /// `'<f8'`: little-endian IEEE-754 binary64 (`numpy.float64`).
    case float64 = "<f8"
    /// `'<i4'`: little-endian two's-complement 32-bit integer (`numpy.int32`).
    case int32 = "<i4"
    /// `'|u1'`: unsigned byte (`numpy.uint8`).
    case uint8 = "|u1"

    /// Bytes per element.
    public var itemSize: Int {
        switch self {
        case .float64: 8
        case .int32: 4
        case .uint8: 1
        }
    }
}

/// A malformed `.npy` file or an array that cannot be written.
public struct NpyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    /// `"npy: <message>"`.
    public var description: String { "npy: \(message)" }
}

/// Writes NumPy `.npy` format version 1.0 files: the magic `\x93NUMPY`, version bytes `1 0`, a
/// little-endian `UInt16` header length, then the header — a Python dict literal such as
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces and ending in
/// `\n` so that magic + length + header is a multiple of 64 bytes — followed by the raw C-order data.
/// 1-D shapes are written with a trailing comma, `(n,)`, and 0-D as `()`.
public enum NpyWriter {
    /// The complete `.npy` bytes of a C-order array of `dtype` with `shape` and raw little-endian
    /// `payload` (`payload.count` must equal the product of `shape` times the item size).
    public static func encode(shape: [Int], dtype: NpyDType, payload: Data) throws(NpyError) -> Data {
        guard shape.allSatisfy({ $0 >= 0 }), let count = checkedProduct(shape) else {
            throw NpyError("invalid shape \(shape)")
        }
        guard payload.count == count * dtype.itemSize else {
            throw NpyError("\(payload.count) payload bytes for shape \(shape) of \(dtype.rawValue)")
        }
        var out = try header(shape: shape, dtype: dtype)
        out.append(payload)
        return out
    }

    /// The magic, version, length and padded header of a v1.0 file.
    public static func header(shape: [Int], dtype: NpyDType) throws(NpyError) -> Data {
        let dims: String
        switch shape.count {
        case 0: dims = "()"
        case 1: dims = "(\(shape[0]),)"
        default: dims = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        var dict = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(dims), }"
        let prefix = 10  // magic (6) + version (2) + header length (2)
        let unpadded = prefix + dict.utf8.count + 1  // + "\n"
        let padding = (64 - unpadded % 64) % 64
        dict += String(repeating: " ", count: padding) + "\n"
        let length = dict.utf8.count
        guard length <= Int(UInt16.max) else { throw NpyError("header of \(length) bytes needs format 2.0") }
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        out.append(UInt8(length & 0xFF))
        out.append(UInt8(length >> 8))
        out.append(contentsOf: Array(dict.utf8))
        return out
    }

    /// `.npy` bytes of `values` as `'<f8'` with `shape`.
    public static func encode(doubles values: [Double], shape: [Int]) throws(NpyError) -> Data {
        try encode(shape: shape, dtype: .float64, payload: LittleEndianDoubles.encode(values))
    }

    /// `.npy` bytes of `values` as `'<i4'` with `shape`.
    public static func encode(int32s values: [Int32], shape: [Int]) throws(NpyError) -> Data {
        let le = values.map(\.littleEndian)
        return try encode(shape: shape, dtype: .int32, payload: le.withUnsafeBytes { Data($0) })
    }

    /// `.npy` bytes of `values` as `'|u1'` with `shape`.
    public static func encode(uint8s values: [UInt8], shape: [Int]) throws(NpyError) -> Data {
        try encode(shape: shape, dtype: .uint8, payload: Data(values))
    }

    /// `.npy` bytes of a matrix: `'<f8'`, shape `(rows, cols)`.
    public static func encode(_ matrix: Matrix) -> Data {
        try! encode(doubles: matrix.values, shape: [matrix.rows, matrix.cols])
    }

    /// `.npy` bytes of a tensor: `'<f8'`, shape `(d0, d1, d2)`.
    public static func encode(_ tensor: Tensor3) -> Data {
        try! encode(doubles: tensor.values, shape: tensor.shape)
    }

    /// `.npy` bytes of the dense binned spikes: `'|u1'`, shape `(neurons, bins)`.
    public static func encode(_ binned: BinnedSpikeMatrix) -> Data {
        try! encode(uint8s: binned.counts, shape: [binned.neurons, binned.bins])
    }

    /// Writes a matrix to `url` (`'<f8'`, shape `(rows, cols)`).
    public static func write(_ matrix: Matrix, to url: URL) throws {
        try encode(matrix).write(to: url, options: .atomic)
    }

    /// Writes a tensor to `url`.
    public static func write(_ tensor: Tensor3, to url: URL) throws {
        try encode(tensor).write(to: url, options: .atomic)
    }

    /// Writes the dense binned spike matrix to `url`.
    public static func write(_ binned: BinnedSpikeMatrix, to url: URL) throws {
        try encode(binned).write(to: url, options: .atomic)
    }
}

/// An array read back from a `.npy` file.
public struct NpyArray: Sendable, Equatable {
    /// The `descr` string, e.g. `"<f8"`.
    public var descr: String
    /// Whether the data is in Fortran (column-major) order.
    public var fortranOrder: Bool
    /// The shape.
    public var shape: [Int]
    /// The raw data bytes.
    public var payload: Data

    /// The elements as `Double` (requires `'<f8'`).
    public func doubles() throws(NpyError) -> [Double] {
        guard descr == NpyDType.float64.rawValue else { throw NpyError("descr \(descr) is not <f8") }
        guard let v = LittleEndianDoubles.decode(payload, count: payload.count / 8), payload.count % 8 == 0 else {
            throw NpyError("payload of \(payload.count) bytes is not a whole number of doubles")
        }
        return v
    }

    /// The elements as `Int32` (requires `'<i4'`).
    public func int32s() throws(NpyError) -> [Int32] {
        guard descr == NpyDType.int32.rawValue, payload.count % 4 == 0 else { throw NpyError("descr \(descr) is not <i4") }
        var v = [Int32](repeating: 0, count: payload.count / 4)
        v.withUnsafeMutableBytes { dst in payload.withUnsafeBytes { dst.copyMemory(from: $0) } }
        return v.map { Int32(littleEndian: $0) }
    }

    /// The elements as `UInt8` (requires `'|u1'`).
    public func uint8s() throws(NpyError) -> [UInt8] {
        guard descr == NpyDType.uint8.rawValue else { throw NpyError("descr \(descr) is not |u1") }
        return [UInt8](payload)
    }
}

/// A minimal `.npy` reader (versions 1.0–3.0) for the files ``NpyWriter`` produces; used by tests.
public enum NpyReader {
    /// Reads and parses the file at `url`.
    public static func read(contentsOf url: URL) throws -> NpyArray {
        try parse(Data(contentsOf: url))
    }

    /// Parses `.npy` bytes, checking that the payload size matches the shape and descr.
    public static func parse(_ data: Data) throws(NpyError) -> NpyArray {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1 ..< 6]) == Array("NUMPY".utf8) else {
            throw NpyError("missing magic string")
        }
        let major = bytes[6]
        let headerStart: Int
        let headerLength: Int
        switch major {
        case 1:
            headerStart = 10
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        case 2, 3:
            guard bytes.count >= 12 else { throw NpyError("truncated header") }
            headerStart = 12
            headerLength = (8 ..< 12).reduce(0) { $0 | Int(bytes[$1]) << (8 * ($1 - 8)) }
        default:
            throw NpyError("unsupported version \(major).\(bytes[7])")
        }
        guard headerStart + headerLength <= bytes.count,
            let header = String(bytes: bytes[headerStart ..< headerStart + headerLength], encoding: .utf8)
        else { throw NpyError("truncated header") }

        func value(of key: String) throws(NpyError) -> Substring {
            guard let k = header.range(of: "'\(key)':") else { throw NpyError("header lacks '\(key)'") }
            return header[k.upperBound...].drop(while: { $0 == " " })
        }
        let descrField = try value(of: "descr")
        guard descrField.first == "'", let close = descrField.dropFirst().firstIndex(of: "'") else {
            throw NpyError("bad descr in \(header)")
        }
        let descr = String(descrField[descrField.index(after: descrField.startIndex) ..< close])
        let fortran = try value(of: "fortran_order").hasPrefix("True")
        let shapeField = try value(of: "shape")
        guard shapeField.first == "(", let shapeClose = shapeField.firstIndex(of: ")") else {
            throw NpyError("bad shape in \(header)")
        }
        var shape: [Int] = []
        for part in shapeField[shapeField.index(after: shapeField.startIndex) ..< shapeClose].split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let d = Int(trimmed), d >= 0 else { throw NpyError("bad dimension '\(trimmed)'") }
            shape.append(d)
        }
        let itemSize: Int
        switch descr {
        case "<f8", "<i8", "<u8": itemSize = 8
        case "<i4", "<u4", "<f4": itemSize = 4
        case "|u1", "|i1", "|b1": itemSize = 1
        default: throw NpyError("unsupported descr \(descr)")
        }
        let payload = Data(bytes[(headerStart + headerLength)...])
        guard let count = checkedProduct(shape), payload.count == count * itemSize else {
            throw NpyError("\(payload.count) data bytes for shape \(shape) of \(descr)")
        }
        return NpyArray(descr: descr, fortranOrder: fortran, shape: shape, payload: payload)
    }
}
