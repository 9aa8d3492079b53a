using Microsoft.Extensions.Logging;

namespace Vfio.Host;

/// <summary>
/// Sends writes through the caller's <see cref="ISysfsWriter"/>, logs them, and turns what the writer throws
/// into the library's exceptions with the path and value in the message.
/// </summary>
internal sealed class AttributeWriter(ISysfsWriter writer, ILogger logger)
{
    private const string PermissionHint =
        "sysfs attributes that change drivers and kernel parameters are writable by root only: run as root " +
        "(or with CAP_DAC_OVERRIDE)";

    public ILogger Logger { get; } = logger;

    public void Write(string path, string value, PciAddress? device = null, string? hint = null)
    {
        HostLog.Writing(Logger, path, Shown(value));
        try
        {
            writer.Write(path, value);
        }
        catch (Exception e) when (ToVfioException(e, path, value, device, hint) is { } mapped)
        {
            throw mapped;
        }
    }

    /// <summary>The library's exception for a failed attribute write, or null for an exception that is not about I/O.</summary>
    public static VfioException? ToVfioException(Exception e, string path, string value, PciAddress? device, string? hint)
    {
        var operation = $"write '{Shown(value)}' to {path}";
        return e switch
        {
            VfioException v => v,
            UnauthorizedAccessException => Errno.ToException(Errno.EACCES, operation, device, hint ?? PermissionHint),
            FileNotFoundException or DirectoryNotFoundException =>
                Errno.ToException(Errno.ENOENT, operation, device, hint ?? "the attribute does not exist on this kernel"),
            // .NET reports the errno of a failed write(2) on Unix as the IOException's HResult.
            IOException io when io.HResult is > 0 and < 4096 =>
                Errno.ToException(io.HResult, operation, device,
                    hint ?? (io.HResult is Errno.EPERM or Errno.EACCES ? PermissionHint : null)),
            IOException io => new VfioException(operation, device, 0, hint ?? io.Message, io),
            _ => null,
        };
    }

    private static string Shown(string value) => value.Replace("\n", "\\n", StringComparison.Ordinal);
}
