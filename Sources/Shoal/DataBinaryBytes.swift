import Foundation
import ShoalCore

/// `Data` in the binary value encoding takes the bytes fast path (`BinaryBytes`): the bytes its
/// own `Codable` form writes (an unkeyed container of one `UInt8` a byte), written and read with
/// one `memcpy` each way instead of one container call a byte.
///
/// It lives here because ShoalCore does not import Foundation. The bytes do not depend on it: a
/// program that links ShoalCore alone writes the same bytes for a `Data` (per byte, slowly), and
/// reads them back.
extension Data: BinaryBytes {
    public func withBinaryBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }

    public init(binaryBytes bytes: UnsafeRawBufferPointer) {
        if let base = bytes.baseAddress, !bytes.isEmpty {
            self.init(bytes: base, count: bytes.count)
        } else {
            self.init()
        }
    }
}
