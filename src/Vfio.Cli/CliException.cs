namespace Vfio.Cli;

/// <summary>
/// A refusal or failure the command itself decides on (as opposed to one the library reports), with the exit code it
/// maps to and a kind for <c>--json</c> error documents.
/// </summary>
internal sealed class CliException(string message, int exitCode, string kind, PciAddress? device = null) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
    public string Kind { get; } = kind;
    public PciAddress? Device { get; } = device;
}
