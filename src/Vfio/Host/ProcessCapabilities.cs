using System.Globalization;

namespace Vfio.Host;

/// <summary>
/// The capabilities a process holds, as <c>/proc/PID/status</c> reports them (CapEff and CapPrm, hexadecimal bit
/// masks indexed by <see cref="LinuxCapability"/>). A snapshot: capabilities rarely change during a process's life,
/// and <see cref="Read"/> takes a new one.
/// </summary>
public sealed class ProcessCapabilities
{
    private ProcessCapabilities(ulong effective, ulong permitted)
    {
        Effective = effective;
        Permitted = permitted;
    }

    /// <summary>The effective set: what the kernel checks.</summary>
    public ulong Effective { get; }

    /// <summary>The permitted set: what the process could make effective.</summary>
    public ulong Permitted { get; }

    /// <summary>Reads the calling process's capabilities from <c>PROCFS/self/status</c>.</summary>
    /// <exception cref="VfioException">The file is missing or has no CapEff line.</exception>
    public static ProcessCapabilities Read(string procfsRoot = "/proc")
    {
        var path = Path.Combine(procfsRoot, "self", "status");
        var text = SysfsFile.ReadText(path) ?? throw new VfioException($"cannot read {path}: is procfs mounted?");
        try
        {
            return Parse(text);
        }
        catch (FormatException e)
        {
            throw new VfioException($"read capabilities from {path}", null, 0, e.Message, e);
        }
    }

    /// <summary>Parses the text of a <c>/proc/PID/status</c> file.</summary>
    /// <exception cref="FormatException">There is no CapEff line, or its value is not hexadecimal.</exception>
    public static ProcessCapabilities Parse(string statusText)
    {
        ArgumentNullException.ThrowIfNull(statusText);
        ulong? effective = null, permitted = null;
        foreach (var line in statusText.AsSpan().EnumerateLines())
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal)) { effective = Hex(line, "CapEff"); }
            else if (line.StartsWith("CapPrm:", StringComparison.Ordinal)) { permitted = Hex(line, "CapPrm"); }
        }
        if (effective is not { } eff) { throw new FormatException("the process status has no CapEff line"); }
        return new ProcessCapabilities(eff, permitted ?? eff);
    }

    private static ulong Hex(ReadOnlySpan<char> line, string field)
    {
        var value = line[(field.Length + 1)..].Trim();
        return ulong.TryParse(value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var mask)
            ? mask
            : throw new FormatException($"{field} value '{value}' is not a hexadecimal mask");
    }

    /// <summary>The capability is in the effective set.</summary>
    public bool HasCapability(LinuxCapability capability) =>
        (uint)capability < 64 && (Effective & (1UL << (int)capability)) != 0;

    /// <summary>Throws unless the capability is in the effective set.</summary>
    /// <param name="capability">What is needed.</param>
    /// <param name="operation">What the caller is about to do, in the user's terms ("open /dev/vfio/noiommu-0").</param>
    /// <param name="device">The device concerned, when there is one.</param>
    /// <param name="why">Why the kernel wants the capability for it.</param>
    /// <exception cref="MissingCapabilityException">The capability is not effective.</exception>
    public void Require(LinuxCapability capability, string operation, PciAddress? device, string why)
    {
        if (!HasCapability(capability))
        {
            throw new MissingCapabilityException(capability.KernelName(), operation, device, why);
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        string.Join(",", Enum.GetValues<LinuxCapability>().Where(HasCapability).Select(c => c.KernelName()));
}
