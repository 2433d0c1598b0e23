import Foundation
import ShoalCore

/// A dense `rows × cols` matrix of `Double`, stored row-major.
///
/// `Codable` form: `{"rows": r, "cols": c, "data": <Data>}` where `data` holds the `r * c` values
/// as little-endian IEEE-754 binary64, row-major (base64 in JSON), so large results stay compact.
/// With Shoal's `BinaryEncoder`, `data` is the `[Double]` itself, which takes the codec's raw
/// fast path (one length, then the bytes) instead of `Data`'s per-byte container.
public struct Matrix: Codable, Sendable, Equatable, Hashable {
    /// Number of rows.
    public private(set) var rows: Int
    /// Number of columns.
    public private(set) var cols: Int
    /// The `rows * cols` values, row-major: element `(r, c)` is `values[r * cols + c]`.
    public private(set) var values: [Double]

    /// A matrix with the given shape and row-major `values` (`values.count == rows * cols`).
    public init(rows: Int, cols: Int, values: [Double]) {
        precondition(rows >= 0 && cols >= 0, "negative matrix shape \(rows)×\(cols)")
        precondition(values.count == rows * cols, "\(values.count) values for a \(rows)×\(cols) matrix")
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    /// A `rows × cols` matrix of zeros.
    public static func zeros(rows: Int, cols: Int) -> Matrix {
        Matrix(rows: rows, cols: cols, values: [Double](repeating: 0, count: rows * cols))
    }

    /// Element `(r, c)`.
    public subscript(r: Int, c: Int) -> Double {
        get {
            precondition(r >= 0 && r < rows && c >= 0 && c < cols, "index (\(r), \(c)) outside \(rows)×\(cols)")
            return values[r * cols + c]
        }
        set {
            precondition(r >= 0 && r < rows && c >= 0 && c < cols, "index (\(r), \(c)) outside \(rows)×\(cols)")
            values[r * cols + c] = newValue
        }
    }

    /// Row `r` as a slice of ``values``.
    public func row(_ r: Int) -> ArraySlice<Double> {
        precondition(r >= 0 && r < rows, "row \(r) outside 0..<\(rows)")
        return values[r * cols ..< (r + 1) * cols]
    }

    /// Overwrites rows `range` with `block`, which must have `range.count` rows and the same
    /// number of columns (NumPy: `self[start:end, :] = block`).
    public mutating func replaceRows(_ range: Range<Int>, with block: Matrix) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        precondition(
            block.rows == range.count && block.cols == cols,
            "block \(block.rows)×\(block.cols) does not fit rows \(range) of a \(rows)×\(cols) matrix")
        values.replaceSubrange(range.lowerBound * cols ..< range.upperBound * cols, with: block.values)
    }

    private enum CodingKeys: String, CodingKey { case rows, cols, data }

    /// Decodes the compact form, checking that the payload matches the shape.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let rows = try c.decode(Int.self, forKey: .rows)
        let cols = try c.decode(Int.self, forKey: .cols)
        guard rows >= 0, cols >= 0, let count = checkedProduct([rows, cols]) else {
            throw DecodingError.dataCorruptedError(forKey: .rows, in: c, debugDescription: "bad shape \(rows)×\(cols)")
        }
        if BinaryCodec.isBinary(decoder) {
            let values = try c.decode([Double].self, forKey: .data)
            guard values.count == count else {
                throw DecodingError.dataCorruptedError(
                    forKey: .data, in: c, debugDescription: "\(values.count) values for a \(rows)×\(cols) matrix")
            }
            self.init(rows: rows, cols: cols, values: values)
            return
        }
        let data = try c.decode(Data.self, forKey: .data)
        guard let values = LittleEndianDoubles.decode(data, count: count) else {
            throw DecodingError.dataCorruptedError(
                forKey: .data, in: c, debugDescription: "\(data.count) bytes for \(count) doubles")
        }
        self.init(rows: rows, cols: cols, values: values)
    }

    /// Encodes the compact form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rows, forKey: .rows)
        try c.encode(cols, forKey: .cols)
        if BinaryCodec.isBinary(encoder) {
            try c.encode(values, forKey: .data)
        } else {
            try c.encode(LittleEndianDoubles.encode(values), forKey: .data)
        }
    }
}

/// A dense `d0 × d1 × d2` array of `Double`, stored row-major (C order): element `(i, j, k)` is
/// `values[(i * d1 + j) * d2 + k]`. Row operations act on the first axis.
///
/// `Codable` form: `{"shape": [d0, d1, d2], "data": <Data>}` with little-endian binary64 values.
/// With Shoal's `BinaryEncoder`, `data` is the `[Double]` itself (the codec's raw fast path).
public struct Tensor3: Codable, Sendable, Equatable, Hashable {
    /// Extent of the first axis.
    public private(set) var d0: Int
    /// Extent of the second axis.
    public private(set) var d1: Int
    /// Extent of the third axis.
    public private(set) var d2: Int
    /// The `d0 * d1 * d2` values in C order.
    public private(set) var values: [Double]

    /// A tensor with the given shape and C-order `values`.
    public init(_ d0: Int, _ d1: Int, _ d2: Int, values: [Double]) {
        precondition(d0 >= 0 && d1 >= 0 && d2 >= 0, "negative tensor shape \(d0)×\(d1)×\(d2)")
        precondition(values.count == d0 * d1 * d2, "\(values.count) values for a \(d0)×\(d1)×\(d2) tensor")
        self.d0 = d0
        self.d1 = d1
        self.d2 = d2
        self.values = values
    }

    /// A `d0 × d1 × d2` tensor of zeros.
    public static func zeros(_ d0: Int, _ d1: Int, _ d2: Int) -> Tensor3 {
        Tensor3(d0, d1, d2, values: [Double](repeating: 0, count: d0 * d1 * d2))
    }

    /// The shape `[d0, d1, d2]`.
    public var shape: [Int] { [d0, d1, d2] }

    /// Element `(i, j, k)`.
    public subscript(i: Int, j: Int, k: Int) -> Double {
        get {
            precondition(
                i >= 0 && i < d0 && j >= 0 && j < d1 && k >= 0 && k < d2,
                "index (\(i), \(j), \(k)) outside \(d0)×\(d1)×\(d2)")
            return values[(i * d1 + j) * d2 + k]
        }
        set {
            precondition(
                i >= 0 && i < d0 && j >= 0 && j < d1 && k >= 0 && k < d2,
                "index (\(i), \(j), \(k)) outside \(d0)×\(d1)×\(d2)")
            values[(i * d1 + j) * d2 + k] = newValue
        }
    }

    /// Overwrites first-axis slices `range` with `block` of shape `range.count × d1 × d2`
    /// (NumPy: `self[start:end, :, :] = block`).
    public mutating func replaceRows(_ range: Range<Int>, with block: Tensor3) {
        precondition(range.lowerBound >= 0 && range.upperBound <= d0, "rows \(range) outside 0..<\(d0)")
        precondition(
            block.d0 == range.count && block.d1 == d1 && block.d2 == d2,
            "block \(block.d0)×\(block.d1)×\(block.d2) does not fit rows \(range) of \(d0)×\(d1)×\(d2)")
        let stride = d1 * d2
        values.replaceSubrange(range.lowerBound * stride ..< range.upperBound * stride, with: block.values)
    }

    private enum CodingKeys: String, CodingKey { case shape, data }

    /// Decodes the compact form, checking that the payload matches the shape.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let shape = try c.decode([Int].self, forKey: .shape)
        guard shape.count == 3, shape.allSatisfy({ $0 >= 0 }), let count = checkedProduct(shape) else {
            throw DecodingError.dataCorruptedError(forKey: .shape, in: c, debugDescription: "bad shape \(shape)")
        }
        if BinaryCodec.isBinary(decoder) {
            let values = try c.decode([Double].self, forKey: .data)
            guard values.count == count else {
                throw DecodingError.dataCorruptedError(
                    forKey: .data, in: c, debugDescription: "\(values.count) values for shape \(shape)")
            }
            self.init(shape[0], shape[1], shape[2], values: values)
            return
        }
        let data = try c.decode(Data.self, forKey: .data)
        guard let values = LittleEndianDoubles.decode(data, count: count) else {
            throw DecodingError.dataCorruptedError(
                forKey: .data, in: c, debugDescription: "\(data.count) bytes for \(count) doubles")
        }
        self.init(shape[0], shape[1], shape[2], values: values)
    }

    /// Encodes the compact form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shape, forKey: .shape)
        if BinaryCodec.isBinary(encoder) {
            try c.encode(values, forKey: .data)
        } else {
            try c.encode(LittleEndianDoubles.encode(values), forKey: .data)
        }
    }
}

/// The product of `dims`, or `nil` on overflow.
func checkedProduct(_ dims: [Int]) -> Int? {
    var p = 1
    for d in dims {
        let (r, o) = p.multipliedReportingOverflow(by: d)
        if o { return nil }
        p = r
    }
    return p
}

/// Conversion between `[Double]` and little-endian binary64 bytes.
enum LittleEndianDoubles {
    static let hostIsLittleEndian = 1.littleEndian == 1

    static func encode(_ values: [Double]) -> Data {
        if hostIsLittleEndian { return values.withUnsafeBytes { Data($0) } }
        var data = Data(capacity: values.count * 8)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    static func decode(_ data: Data, count: Int) -> [Double]? {
        guard data.count == count * 8 else { return nil }
        var values = [Double](repeating: 0, count: count)
        values.withUnsafeMutableBytes { dst in
            data.withUnsafeBytes { src in dst.copyMemory(from: src) }
        }
        if !hostIsLittleEndian {
            for i in values.indices { values[i] = Double(bitPattern: UInt64(littleEndian: values[i].bitPattern)) }
        }
        return values
    }
}
