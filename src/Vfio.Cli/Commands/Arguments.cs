using System.CommandLine;
using System.Globalization;

namespace Vfio.Cli.Commands;

/// <summary>Arguments and option values shared by the commands, parsed so that a bad value is a usage error (exit 1).</summary>
internal static class Arguments
{
    private const string BdfHelp = "PCI address as sysfs names it, DDDD:BB:DD.F or BB:DD.F (e.g. 0000:03:00.0)";

    /// <summary>
    /// The option's value for a validator, or false when it did not parse (the parser reports that error itself; a
    /// validator that read the value anyway would throw).
    /// </summary>
    public static bool TryGet<T>(System.CommandLine.Parsing.OptionResult r, out T value) => TryRead(r.GetValueOrDefault<T>, out value);

    /// <summary>The argument's value for a validator, or false when it did not parse (as <see cref="TryGet{T}(System.CommandLine.Parsing.OptionResult, out T)"/>).</summary>
    public static bool TryGet<T>(System.CommandLine.Parsing.ArgumentResult r, out T value) => TryRead(r.GetValueOrDefault<T>, out value);

    private static bool TryRead<T>(Func<T> read, out T value)
    {
        try
        {
            value = read();
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default!;
            return false;
        }
    }

    /// <summary>
    /// <c>--unsafe-noiommu</c>: the consent to open a device in a No-IOMMU group. <paramref name="recursive"/> for a
    /// command group, so it is accepted before or after the subcommand.
    /// </summary>
    public static Option<bool> AllowNoIommu(bool recursive = false) => new("--unsafe-noiommu")
    {
        Description = "Allow opening a device in a No-IOMMU group (no DMA isolation; the kernel is tainted)",
        Recursive = recursive,
    };

    /// <summary>One or more PCI addresses.</summary>
    public static Argument<PciAddress[]> Bdfs() => new("BDF")
    {
        Description = BdfHelp + "; several may be given",
        Arity = ArgumentArity.OneOrMore,
        CustomParser = result =>
        {
            var list = new List<PciAddress>();
            foreach (var token in result.Tokens)
            {
                if (ParseBdf(token.Value) is { } address) { list.Add(address); }
                else { result.AddError(BdfError(token.Value)); }
            }
            return [.. list];
        },
    };

    /// <summary>Exactly one PCI address, shown in help as <paramref name="name"/>.</summary>
    public static Argument<PciAddress> Bdf(string name = "BDF") => new(name)
    {
        Description = BdfHelp,
        Arity = ArgumentArity.ExactlyOne,
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (ParseBdf(text) is { } address) { return address; }
            result.AddError(BdfError(text));
            return default;
        },
    };

    /// <summary>A required option naming one PCI address (<c>--port 0000:00:04.0</c>).</summary>
    public static Option<PciAddress> BdfOption(string name, string description) => new(name)
    {
        Description = $"{description}: {BdfHelp}",
        HelpName = "BDF",
        Required = true,
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (ParseBdf(text) is { } address) { return address; }
            result.AddError(BdfError(text));
            return default;
        },
    };

    /// <summary>
    /// Exactly one device for the <c>nvme</c> commands: a PCI address, or the path of a vfio-user socket (any text
    /// with a <c>/</c> in it, e.g. <c>/tmp/nvme.sock</c> or <c>./nvme.sock</c>) served by <c>vfio serve nvme</c> or
    /// another vfio-user server.
    /// </summary>
    public static Argument<DeviceTarget> Device(string name = "DEVICE") => new(name)
    {
        Description = BdfHelp + ", or the path of a vfio-user socket (contains a '/', e.g. ./nvme.sock)",
        Arity = ArgumentArity.ExactlyOne,
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (text.Contains('/', StringComparison.Ordinal)) { return DeviceTarget.Socket(text); }
            if (ParseBdf(text) is { } address) { return DeviceTarget.Pci(address); }
            result.AddError(BdfError(text) + " (a vfio-user socket is given as a path with a '/')");
            return default;
        },
    };

    /// <summary>A number as nvme-cli takes one: decimal digits, or hex digits after 0x; no sign, no spaces inside.</summary>
    public static bool TryParseNumber(string text, out ulong value)
    {
        var s = text.Trim();
        return s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(s.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    private static PciAddress? ParseBdf(string text) => PciAddress.TryParse(text, out var a) ? a : null;

    private static string BdfError(string text)
    {
        // PciAddress.Parse says what is wrong with the text; only its message is wanted here.
        try
        {
            PciAddress.Parse(text);
            return $"'{text}' is not a PCI address";
        }
        catch (FormatException e)
        {
            return e.Message;
        }
    }

    /// <summary>
    /// A hugepage size: a number with K, M or G (optionally followed by B or iB), powers of 1024 as the kernel means
    /// them ("2M", "1G", "2048kB"). Returns null for anything else.
    /// </summary>
    public static ulong? ParsePageSize(string text) => ParseSize(text, unitRequired: true);

    /// <summary>
    /// A byte count: a plain number of bytes ("4096", "4096B"), or a number with K, M or G (optionally followed by B or iB),
    /// powers of 1024 ("4k", "128K", "64MiB"), unless <paramref name="unitRequired"/>. Returns null for anything
    /// else, zero included.
    /// </summary>
    public static ulong? ParseSize(string text, bool unitRequired = false)
    {
        var s = text.Trim();
        if (s.EndsWith("iB", StringComparison.OrdinalIgnoreCase)) { s = s[..^2]; }
        else if (s.EndsWith('B') || s.EndsWith('b')) { s = s[..^1]; }
        if (s.Length == 0) { return null; }
        int shift = char.ToUpperInvariant(s[^1]) switch { 'K' => 10, 'M' => 20, 'G' => 30, _ => -1 };
        if (shift < 0)
        {
            if (unitRequired) { return null; }
            shift = 0;
        }
        else { s = s[..^1]; }
        if (!ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n == 0 ||
            n > ulong.MaxValue >> shift)
        {
            return null;
        }
        return n << shift;
    }

    /// <summary>
    /// An option whose value is a byte count as <paramref name="parse"/> reads it (null: not one); a token it
    /// cannot read is a usage error with the message <paramref name="error"/> makes of it.
    /// </summary>
    public static Option<ulong?> SizeOption(string name, string description, string helpName, Func<string, ulong?> parse,
        Func<string, string> error, params string[] aliases) => new(name, aliases)
    {
        Description = description,
        HelpName = helpName,
        CustomParser = r =>
        {
            var text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            if (parse(text) is { } bytes) { return bytes; }
            r.AddError(error(text));
            return null;
        },
    };

    /// <summary>A page size as people write it: "2M", "1G", "64K".</summary>
    public static string FormatPageSize(ulong bytes) =>
        bytes % (1UL << 30) == 0 ? string.Create(CultureInfo.InvariantCulture, $"{bytes >> 30}G")
        : bytes % (1UL << 20) == 0 ? string.Create(CultureInfo.InvariantCulture, $"{bytes >> 20}M")
        : bytes % (1UL << 10) == 0 ? string.Create(CultureInfo.InvariantCulture, $"{bytes >> 10}K")
        : bytes.ToString(CultureInfo.InvariantCulture);

    /// <summary>A byte count for people: exact in the largest binary unit that divides it, else in bytes.</summary>
    public static string FormatBytes(ulong bytes) => bytes switch
    {
        0 => "0",
        _ when bytes % (1UL << 30) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 30} GiB"),
        _ when bytes % (1UL << 20) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 20} MiB"),
        _ when bytes % (1UL << 10) == 0 => string.Create(CultureInfo.InvariantCulture, $"{bytes >> 10} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };

    /// <summary>Hex, lowercase, zero-padded, as lspci -n prints IDs.</summary>
    public static string Hex(uint value, int digits) => value.ToString("x" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}

/// <summary>
/// The device a command works on: a PCI function opened through VFIO, or an emulated or remote one reached over a
/// vfio-user socket.
/// </summary>
/// <param name="Address">The PCI address; default for a socket.</param>
/// <param name="SocketPath">The vfio-user socket, or null for a PCI function.</param>
internal readonly record struct DeviceTarget(PciAddress Address, string? SocketPath)
{
    /// <summary>A PCI function opened through VFIO.</summary>
    public static DeviceTarget Pci(PciAddress address) => new(address, null);

    /// <summary>A device behind a vfio-user socket.</summary>
    public static DeviceTarget Socket(string path) => new(default, path);

    /// <summary>The BDF or the socket path, as the user named the device.</summary>
    public override string ToString() => SocketPath ?? Address.ToString();
}
