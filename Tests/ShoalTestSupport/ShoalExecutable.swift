import Foundation

/// Finds the `shoal` executable built alongside the tests, so tests can run it as a child process.
///
/// Looks, in order, at `$SHOAL_EXECUTABLE`, next to the running test binary (SwiftPM puts the
/// test bundle and products in the same `.build/<triple>/<config>` folder), then walks up from
/// this source file to the package root and tries `.build/debug/shoal`. Shared by the test
/// targets through the `ShoalTestSupport` target.
public enum ShoalExecutable {
    public struct NotFound: Error, CustomStringConvertible {
        public var searched: [String]
        public var description: String {
            "cannot find the 'shoal' executable; build it with 'swift build' (searched: \(searched.joined(separator: ", ")))"
        }
    }

    public static func url(filePath: String = #filePath) throws -> URL {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["SHOAL_EXECUTABLE"] { candidates.append(explicit) }
        var running = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if !FileManager.default.fileExists(atPath: running.path) {
            running = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        }
        // Linux: .build/<triple>/debug/ShoalPackageTests.xctest; macOS: the bundle's Contents/MacOS.
        var directory = running.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("shoal").path)
            directory = directory.deletingLastPathComponent()
        }
        var root = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while root.path != "/" {
            if FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
                candidates.append(root.appendingPathComponent(".build/debug/shoal").path)
                break
            }
            root = root.deletingLastPathComponent()
        }
        for candidate in candidates {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate)
            {
                return URL(fileURLWithPath: candidate)
            }
        }
        throw NotFound(searched: candidates)
    }
}
