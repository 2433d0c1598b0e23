import Foundation
import Testing

@testable import Shoal

/// A fresh temporary folder for one test.
func makeTempDirectory(_ tag: String = "wff") -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("shoal-\(tag)-\(UUID().uuidString)", isDirectory: true)
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Writes `yaml` as `<tmp>/wf.yaml` (plus `files`, relative to it) and loads it.
func loadWorkflow(
    _ yaml: String, files: [String: String] = [:], options: WorkflowFile.ParseOptions = .init()
) throws(WorkflowFileError) -> WorkflowFile {
    let dir = makeTempDirectory()
    for (name, text) in files {
        try! text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }
    let path = dir.appendingPathComponent("wf.yaml").path
    try! yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return try WorkflowFile.load(path: path, options: options)
}

/// The error loading `yaml` throws (nil if it loads).
func workflowError(
    _ yaml: String, files: [String: String] = [:], options: WorkflowFile.ParseOptions = .init()
) -> WorkflowFileError? {
    do {
        _ = try loadWorkflow(yaml, files: files, options: options)
        return nil
    } catch {
        return error
    }
}
