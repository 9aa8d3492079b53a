using System.Text;

namespace Vfio.Host;

/// <summary>
/// Writes one value to one sysfs (or procfs) attribute. Everything the host layer changes on the machine goes
/// through this interface, so a caller can log, dry-run or delegate the writes (e.g. to a privileged helper),
/// and tests can stand in for the kernel, which reacts to writes such as <c>drivers/vfio-pci/bind</c>.
/// </summary>
public interface ISysfsWriter
{
    /// <summary>
    /// Writes <paramref name="value"/> to the attribute at <paramref name="path"/> in a single write.
    /// </summary>
    /// <exception cref="IOException">The kernel refused the value; <see cref="Exception.HResult"/> is the errno.</exception>
    /// <exception cref="UnauthorizedAccessException">The process may not write the attribute.</exception>
    void Write(string path, string value);
}

/// <summary>
/// Writes attributes the way <c>echo value &gt; path</c> does, minus the newline: opens the existing file
/// write-only (never creates it: sysfs attributes cannot be created) and hands the whole value to the
/// kernel in one <c>write</c>, which sysfs delivers to the attribute's <c>store()</c> as one call.
/// </summary>
public sealed class SysfsWriter : ISysfsWriter
{
    /// <summary>The shared instance; the writer has no state.</summary>
    public static SysfsWriter Instance { get; } = new();

    /// <inheritdoc />
    public void Write(string path, string value)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
        RandomAccess.Write(handle, Encoding.ASCII.GetBytes(value), fileOffset: 0);
    }
}
