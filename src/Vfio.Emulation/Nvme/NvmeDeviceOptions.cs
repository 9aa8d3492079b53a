using Vfio.Spec.Nvme;

namespace Vfio.Emulation.Nvme;

/// <summary>The shape of an emulated NVMe controller and its one namespace.</summary>
public sealed partial record NvmeDeviceOptions
{
    /// <summary>Largest namespace the model holds in memory: 1 GiB.</summary>
    public const ulong MaxCapacityBytes = 1UL << 30;

    /// <summary>Logical block size: 512 or 4096 (the namespace reports both formats, this one in use).</summary>
    public int BlockSize { get; init; } = 512;

    /// <summary>Blocks in namespace 1 (capacity = blocks × block size, at most <see cref="MaxCapacityBytes"/>).</summary>
    public ulong BlockCount { get; init; } = 8192;

    /// <summary>CAP.DSTRD: doorbells are 4 &lt;&lt; stride bytes apart (0-4).</summary>
    public int DoorbellStride { get; init; }

    /// <summary>Identify MDTS: largest transfer is 4 KiB &lt;&lt; MDTS (0: no limit).</summary>
    public byte Mdts { get; init; } = 5;

    /// <summary>Serial number (Identify Controller bytes 4-23).</summary>
    public string Serial { get; init; } = "EMU-0001";

    /// <summary>Model number (Identify Controller bytes 24-63).</summary>
    public string Model { get; init; } = "Emulated NVMe Ctrl";

    /// <summary>
    /// Optional NVM commands offered (ONCS); Write Zeroes and Dataset Management by default. The default stays without
    /// <see cref="OptionalNvmCommands.SaveAndSelect"/> (Set Features SV, Get Features SEL): tests of saved features set it.
    /// </summary>
    public OptionalNvmCommands Oncs { get; init; } = OptionalNvmCommands.WriteZeroes | OptionalNvmCommands.DatasetManagement;

    /// <summary>MSI-X vectors (1-64).</summary>
    public int MsixVectors { get; init; } = 8;

    /// <summary>Most I/O queue pairs granted by Set Features (Number of Queues), 1-64.</summary>
    public int MaxIoQueues { get; init; } = 64;

    /// <summary>
    /// Identify Controller VWC bit 0: a volatile write cache is present (the default) and the Volatile Write Cache
    /// feature exists; without it Get and Set Features of FID 06h answer Invalid Field.
    /// </summary>
    public bool VolatileWriteCache { get; init; } = true;

    /// <summary>
    /// Firmware slots (1-7) for Firmware Image Download and Commit; null (the default) answers both with Invalid
    /// Command Opcode, as QEMU 7.2's nvme device does.
    /// </summary>
    public int? FirmwareSlots { get; init; }

    /// <summary>Throws when a value is out of range, naming it.</summary>
    internal void Validate()
    {
        if (BlockSize is not (512 or 4096)) { throw new ArgumentOutOfRangeException(nameof(BlockSize), BlockSize, "the block size is 512 or 4096"); }
        if (BlockCount == 0 || BlockCount > MaxCapacityBytes / (ulong)BlockSize)
        {
            throw new ArgumentOutOfRangeException(nameof(BlockCount), BlockCount, $"the namespace holds 1 to {MaxCapacityBytes / (ulong)BlockSize} blocks of {BlockSize} bytes (at most 1 GiB in memory)");
        }
        if (DoorbellStride is < 0 or > 4) { throw new ArgumentOutOfRangeException(nameof(DoorbellStride), DoorbellStride, "the doorbell stride is 0-4"); }
        if (Mdts > 8) { throw new ArgumentOutOfRangeException(nameof(Mdts), Mdts, "MDTS is 0 (no limit) to 8 (1 MiB)"); }
        if (MsixVectors is < 1 or > 64) { throw new ArgumentOutOfRangeException(nameof(MsixVectors), MsixVectors, "1-64 MSI-X vectors"); }
        if (MaxIoQueues is < 1 or > 64) { throw new ArgumentOutOfRangeException(nameof(MaxIoQueues), MaxIoQueues, "1-64 I/O queues"); }
        if (FirmwareSlots is < 1 or > 7) { throw new ArgumentOutOfRangeException(nameof(FirmwareSlots), FirmwareSlots, "1-7 firmware slots, or null for none"); }
        ArgumentNullException.ThrowIfNull(Serial);
        ArgumentNullException.ThrowIfNull(Model);
        if (Serial.Length > 20 || !Ascii(Serial)) { throw new ArgumentException("the serial number is at most 20 ASCII characters", nameof(Serial)); }
        if (Model.Length > 40 || !Ascii(Model)) { throw new ArgumentException("the model number is at most 40 ASCII characters", nameof(Model)); }
        ValidateNamespaces();
    }

    private static bool Ascii(string s)
    {
        foreach (char c in s) { if (c is < ' ' or > '~') { return false; } }
        return true;
    }
}
