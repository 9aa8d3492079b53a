using System.Buffers.Binary;
using Vfio.Dma;

namespace Vfio.Spec.Nvme;

/// <summary>Command Set Identifiers (CSI, NVMe 2.0 Figure 286).</summary>
public enum CommandSetIdentifier : byte
{
    /// <summary>NVM Command Set.</summary>
    Nvm = 0x00,
    /// <summary>Key Value Command Set.</summary>
    KeyValue = 0x01,
    /// <summary>Zoned Namespace Command Set.</summary>
    Zoned = 0x02,
}

/// <summary>
/// The I/O Command Set specific Identify Controller data structure of the NVM Command Set (Identify CNS 06h, CSI 00h;
/// NVM Command Set Specification 1.0, Figure 93): limits of Verify, Write Zeroes, Write Uncorrectable and Dataset
/// Management. Sizes are in units of the minimum memory page size (CAP.MPSMIN) as powers of two, like MDTS; 0 means
/// "no limit reported".
/// </summary>
public sealed record NvmIdentifyController
{
    /// <summary>Size of the structure.</summary>
    public const int Size = 4096;

    /// <summary>VSL (byte 0): Verify size limit.</summary>
    public required byte VerifySizeLimit { get; init; }
    /// <summary>WZSL (byte 1): Write Zeroes size limit.</summary>
    public required byte WriteZeroesSizeLimit { get; init; }
    /// <summary>WUSL (byte 2): Write Uncorrectable size limit.</summary>
    public required byte WriteUncorrectableSizeLimit { get; init; }
    /// <summary>DMRL (byte 3): most ranges in one Dataset Management command (0: not reported).</summary>
    public required byte DatasetManagementRangesLimit { get; init; }
    /// <summary>DMRSL (bytes 7:4): most logical blocks in one Dataset Management range (0: not reported).</summary>
    public required uint DatasetManagementRangeSizeLimit { get; init; }
    /// <summary>DMSL (bytes 15:8): most logical blocks one Dataset Management command covers (0: not reported).</summary>
    public required ulong DatasetManagementSizeLimit { get; init; }

    /// <summary>Parses the structure (at least the 16 bytes that carry fields; the rest is reserved).</summary>
    public static NvmIdentifyController Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < 16) { throw new FormatException($"the NVM command set Identify Controller structure has fields in 16 bytes; got {data.Length}"); }
        return new NvmIdentifyController
        {
            VerifySizeLimit = data[0],
            WriteZeroesSizeLimit = data[1],
            WriteUncorrectableSizeLimit = data[2],
            DatasetManagementRangesLimit = data[3],
            DatasetManagementRangeSizeLimit = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]),
            DatasetManagementSizeLimit = BinaryPrimitives.ReadUInt64LittleEndian(data[8..]),
        };
    }

    /// <summary>The fields under the names nvme-cli's <c>nvm-id-ctrl -o json</c> prints, in its order.</summary>
    public IEnumerable<(string JsonName, object Value)> NvmeCliFields()
    {
        yield return ("vsl", VerifySizeLimit);
        yield return ("wzsl", WriteZeroesSizeLimit);
        yield return ("wusl", WriteUncorrectableSizeLimit);
        yield return ("dmrl", DatasetManagementRangesLimit);
        yield return ("dmrsl", DatasetManagementRangeSizeLimit);
        yield return ("dmsl", DatasetManagementSizeLimit);
    }
}

/// <summary>
/// The I/O Command Set data structure (Identify CNS 1Ch, NVMe 2.0 Figure 290): 512 command set combinations, each a
/// 64-bit vector whose bit N says command set CSI N is in the combination. A zero vector is no combination.
/// </summary>
public static class IoCommandSetCombinations
{
    /// <summary>Size of the structure: 512 vectors of 8 bytes.</summary>
    public const int Size = 4096;

    /// <summary>The non-zero vectors with their index (the index is what Set Features, I/O Command Set Profile, selects).</summary>
    public static IReadOnlyList<(int Index, ulong Vector)> Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length < Size) { throw new FormatException($"the I/O Command Set data structure is {Size} bytes; got {data.Length}"); }
        var list = new List<(int, ulong)>();
        for (int i = 0; i < Size / 8; i++)
        {
            ulong v = BinaryPrimitives.ReadUInt64LittleEndian(data[(8 * i)..]);
            if (v != 0) { list.Add((i, v)); }
        }
        return list;
    }
}

public partial struct NvmeCommand
{
    /// <summary>Identify with a Command Set Identifier (CDW11 bits 31:24, NVMe 2.0 Figure 272), for CNS 05h, 06h and the like.</summary>
    public static NvmeCommand Identify(IdentifyCns cns, uint nsid, CommandSetIdentifier csi, DmaAddress prp1, DmaAddress prp2)
    {
        var c = Identify(cns, nsid, prp1, prp2);
        c.Cdw11 = (uint)csi << 24;
        return c;
    }
}
