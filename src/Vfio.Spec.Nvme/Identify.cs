using System.Buffers.Binary;
using System.Text;

namespace Vfio.Spec.Nvme;

/// <summary>Optional NVM commands the controller supports (ONCS, Identify Controller bytes 521:520, NVMe 1.4 Figure 247).</summary>
[Flags]
public enum OptionalNvmCommands : ushort
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Compare.</summary>
    Compare = 1 << 0,
    /// <summary>Write Uncorrectable.</summary>
    WriteUncorrectable = 1 << 1,
    /// <summary>Dataset Management.</summary>
    DatasetManagement = 1 << 2,
    /// <summary>Write Zeroes.</summary>
    WriteZeroes = 1 << 3,
    /// <summary>Save field in Set Features and Select in Get Features.</summary>
    SaveAndSelect = 1 << 4,
    /// <summary>Reservations.</summary>
    Reservations = 1 << 5,
    /// <summary>Timestamp feature.</summary>
    Timestamp = 1 << 6,
    /// <summary>Verify.</summary>
    Verify = 1 << 7,
}

/// <summary>The Identify Controller data structure, the fields the driver and the model use (NVMe 1.4 §5.15.2.2, Figure 247).</summary>
public sealed partial record IdentifyController
{
    /// <summary>The 4096 bytes as the controller returned them, for fields not given a property of their own.</summary>
    public ReadOnlyMemory<byte> Raw { get; init; }

    /// <summary>Size of the structure.</summary>
    public const int Size = 4096;

    /// <summary>PCI vendor ID (bytes 1:0).</summary>
    public required ushort VendorId { get; init; }
    /// <summary>PCI subsystem vendor ID (bytes 3:2).</summary>
    public required ushort SubsystemVendorId { get; init; }
    /// <summary>Serial number (bytes 23:4, ASCII, space padded; trimmed).</summary>
    public required string SerialNumber { get; init; }
    /// <summary>Model number (bytes 63:24; trimmed).</summary>
    public required string ModelNumber { get; init; }
    /// <summary>Firmware revision (bytes 71:64; trimmed).</summary>
    public required string FirmwareRevision { get; init; }
    /// <summary>MDTS (byte 77): maximum transfer is <c>2^MDTS</c> units of CAP.MPSMIN; 0 means no limit.</summary>
    public required byte MaxDataTransferShift { get; init; }
    /// <summary>Controller ID (bytes 79:78).</summary>
    public required ushort ControllerId { get; init; }
    /// <summary>Version the controller reports (bytes 83:80; 0 before NVMe 1.2).</summary>
    public required NvmeVersion Version { get; init; }
    /// <summary>SQES (byte 512): bits 3:0 required, 7:4 maximum submission entry size, as powers of two.</summary>
    public required byte SubmissionEntrySizes { get; init; }
    /// <summary>CQES (byte 513): as SQES, for completion entries.</summary>
    public required byte CompletionEntrySizes { get; init; }
    /// <summary>MAXCMD (bytes 515:514): most commands outstanding in the whole controller, or 0.</summary>
    public required ushort MaxCommands { get; init; }
    /// <summary>NN (bytes 519:516): highest namespace ID.</summary>
    public required uint NamespaceCount { get; init; }
    /// <summary>ONCS (bytes 521:520).</summary>
    public required OptionalNvmCommands OptionalCommands { get; init; }
    /// <summary>VWC (byte 525) bit 0: a volatile write cache is present (Flush is meaningful).</summary>
    public required bool VolatileWriteCache { get; init; }
    /// <summary>Subsystem NQN (bytes 1023:768; trimmed of NULs).</summary>
    public required string SubsystemNqn { get; init; }

    /// <summary>The largest transfer one command may move, in bytes, or null for no limit.</summary>
    public ulong? MaxTransferBytes(int minPageShift) =>
        MaxDataTransferShift == 0 ? null : 1UL << (minPageShift + MaxDataTransferShift);

    /// <summary>Parses the 4096-byte structure.</summary>
    public static IdentifyController Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < Size) { throw new ArgumentException($"Identify Controller is {Size} bytes; got {data.Length}", nameof(data)); }
        return new IdentifyController
        {
            Raw = data[..Size].ToArray(),
            VendorId = BinaryPrimitives.ReadUInt16LittleEndian(data),
            SubsystemVendorId = BinaryPrimitives.ReadUInt16LittleEndian(data[2..]),
            SerialNumber = Ascii(data.Slice(4, 20)),
            ModelNumber = Ascii(data.Slice(24, 40)),
            FirmwareRevision = Ascii(data.Slice(64, 8)),
            MaxDataTransferShift = data[77],
            ControllerId = BinaryPrimitives.ReadUInt16LittleEndian(data[78..]),
            Version = new NvmeVersion(BinaryPrimitives.ReadUInt32LittleEndian(data[80..])),
            SubmissionEntrySizes = data[512],
            CompletionEntrySizes = data[513],
            MaxCommands = BinaryPrimitives.ReadUInt16LittleEndian(data[514..]),
            NamespaceCount = BinaryPrimitives.ReadUInt32LittleEndian(data[516..]),
            OptionalCommands = (OptionalNvmCommands)BinaryPrimitives.ReadUInt16LittleEndian(data[520..]),
            VolatileWriteCache = (data[525] & 1) != 0,
            SubsystemNqn = Ascii(data.Slice(768, 256)),
        };
    }

    internal static string Ascii(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        if (end >= 0) { field = field[..end]; }
        return Encoding.ASCII.GetString(field).Trim();
    }
}

/// <summary>One LBA format (NVMe 1.4 Figure 251): metadata size, data size and relative performance.</summary>
/// <param name="MetadataSize">MS: metadata bytes per block.</param>
/// <param name="DataShift">LBADS: block size is <c>2^LBADS</c> bytes (0: format not available).</param>
/// <param name="RelativePerformance">RP: 0 best .. 3 degraded.</param>
public readonly record struct LbaFormat(ushort MetadataSize, byte DataShift, byte RelativePerformance)
{
    /// <summary>Block size in bytes.</summary>
    public int BlockSize => DataShift == 0 ? 0 : 1 << DataShift;
}

/// <summary>The Identify Namespace data structure, the fields the driver and the model use (NVMe 1.4 §5.15.2.1, Figure 245).</summary>
public sealed partial record IdentifyNamespace
{
    /// <summary>The 4096 bytes as the controller returned them, for fields not given a property of their own.</summary>
    public ReadOnlyMemory<byte> Raw { get; init; }

    /// <summary>Size of the structure.</summary>
    public const int Size = 4096;

    /// <summary>NSZE (bytes 7:0): size in logical blocks.</summary>
    public required ulong SizeInBlocks { get; init; }
    /// <summary>NCAP (bytes 15:8): capacity in logical blocks.</summary>
    public required ulong Capacity { get; init; }
    /// <summary>NUSE (bytes 23:16): blocks allocated.</summary>
    public required ulong Utilization { get; init; }
    /// <summary>NSFEAT (byte 24).</summary>
    public required byte Features { get; init; }
    /// <summary>FLBAS (byte 26): the format in use.</summary>
    public required byte FormattedLbaSize { get; init; }
    /// <summary>The LBA formats the namespace offers (NLBAF + 1 of them, from byte 128 on).</summary>
    public required IReadOnlyList<LbaFormat> LbaFormats { get; init; }

    /// <summary>
    /// Index of the format in use: FLBAS bits 3:0, with bits 6:5 as the upper two bits when more than 16 formats
    /// exist (NVMe 2.0 §4.1.5.1 extended the field; with 16 or fewer formats those bits are 0).
    /// </summary>
    public int FormatIndex => (FormattedLbaSize & 0xF) | (LbaFormats.Count > 16 ? ((FormattedLbaSize >> 5) & 3) << 4 : 0);

    /// <summary>The format in use.</summary>
    public LbaFormat CurrentFormat => LbaFormats[FormatIndex];

    /// <summary>Bytes per logical block.</summary>
    public int BlockSize => CurrentFormat.BlockSize;

    /// <summary>Metadata bytes per logical block (the NVMe driver supports only 0).</summary>
    public int MetadataSize => CurrentFormat.MetadataSize;

    /// <summary>Parses the 4096-byte structure.</summary>
    /// <exception cref="FormatException">FLBAS selects a format that is not listed or has no block size.</exception>
    public static IdentifyNamespace Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < Size) { throw new ArgumentException($"Identify Namespace is {Size} bytes; got {data.Length}", nameof(data)); }
        int count = data[25] + 1;        // NLBAF is 0's based, at most 64 formats
        var formats = new LbaFormat[count];
        for (int i = 0; i < count; i++)
        {
            uint f = BinaryPrimitives.ReadUInt32LittleEndian(data[(128 + 4 * i)..]);
            formats[i] = new LbaFormat((ushort)f, (byte)(f >> 16), (byte)((f >> 24) & 3));
        }
        var ns = new IdentifyNamespace
        {
            Raw = data[..Size].ToArray(),
            SizeInBlocks = BinaryPrimitives.ReadUInt64LittleEndian(data),
            Capacity = BinaryPrimitives.ReadUInt64LittleEndian(data[8..]),
            Utilization = BinaryPrimitives.ReadUInt64LittleEndian(data[16..]),
            Features = data[24],
            FormattedLbaSize = data[26],
            LbaFormats = formats,
        };
        if (ns.FormatIndex >= count || formats[ns.FormatIndex].DataShift is < 9 or > 31)
        {
            throw new FormatException($"FLBAS 0x{ns.FormattedLbaSize:x2} selects LBA format {ns.FormatIndex}, which is not a usable format " +
                $"({count} listed)");
        }
        return ns;
    }

    /// <summary>
    /// Parses an active namespace ID list (CNS 02h, NVMe 1.4 §5.15.2.3): up to 1024 ascending NSIDs, ended by
    /// the first zero.
    /// </summary>
    public static List<uint> ParseActiveList(ReadOnlySpan<byte> data)
    {
        var list = new List<uint>();
        for (int i = 0; i + 4 <= data.Length && i < 4096; i += 4)
        {
            uint id = BinaryPrimitives.ReadUInt32LittleEndian(data[i..]);
            if (id == 0) { break; }
            list.Add(id);
        }
        return list;
    }
}
