namespace Vfio.Spec.Nvme;

/// <summary>CA of Firmware Commit (NVMe 1.4 §5.11, Command Dword 10 bits 5:3).</summary>
public enum FirmwareCommitAction : byte
{
    /// <summary>000b: the downloaded image replaces the slot's; nothing is activated.</summary>
    Replace = 0,
    /// <summary>001b: the downloaded image replaces the slot's and becomes active at the next reset.</summary>
    ReplaceAndActivateOnReset = 1,
    /// <summary>010b: the image already in the slot becomes active at the next reset (no download needed).</summary>
    ActivateOnReset = 2,
    /// <summary>011b: the downloaded image replaces the slot's and becomes active at once, without a reset.</summary>
    ReplaceAndActivateNow = 3,
    /// <summary>110b: the downloaded image replaces the boot partition BPID.</summary>
    ReplaceBootPartition = 6,
    /// <summary>111b: boot partition BPID becomes the active one.</summary>
    ActivateBootPartition = 7,
}

/// <summary>
/// FRMW, Identify Controller byte 260 (NVMe 1.4 Figure 247): bit 0 slot 1 read-only, bits 3:1 the number of slots
/// (1-7), bit 4 firmware activation without a reset supported.
/// </summary>
/// <param name="Value">The byte.</param>
public readonly record struct FirmwareUpdates(byte Value)
{
    /// <summary>Slot 1 holds a read-only image: it can be activated, never replaced.</summary>
    public bool Slot1ReadOnly => (Value & 1) != 0;

    /// <summary>Firmware slots the controller has (0 from a controller that reports none).</summary>
    public int SlotCount => (Value >> 1) & 7;

    /// <summary>Commit action 011b (activate now, without a reset) is supported.</summary>
    public bool ActivationWithoutReset => (Value & (1 << 4)) != 0;
}

public sealed partial record IdentifyController
{
    /// <summary>FRMW (byte 260): firmware slots and how they are updated.</summary>
    public FirmwareUpdates FirmwareUpdates => new(RawByte(260));

    /// <summary>
    /// FWUG (byte 319), in bytes: Firmware Image Download offsets and sizes are multiples of it (NVMe 1.4 Figure 247,
    /// 4 KiB units); null when the controller gives no granularity (00h: not reported, FFh: no restriction).
    /// </summary>
    public int? FirmwareUpdateGranularity => RawByte(319) is 0 or 0xFF ? null : RawByte(319) * 4096;

    private byte RawByte(int offset) => Raw.Length > offset ? Raw.Span[offset] : (byte)0;
}

public partial struct NvmeCommand
{
    /// <summary>
    /// Firmware Image Download (NVMe 1.4 §5.12): NUMD (0's based dwords) in CDW10, OFST (dword offset into the image)
    /// in CDW11; the piece is at PRP1/PRP2 (set by the driver's data path).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dwords"/> is 0.</exception>
    public static NvmeCommand FirmwareImageDownload(uint dwordOffset, uint dwords)
    {
        if (dwords == 0) { throw new ArgumentOutOfRangeException(nameof(dwords), dwords, "a piece is at least one dword"); }
        var c = Make((byte)AdminOpcode.FirmwareImageDownload, 0);
        c.Cdw10 = dwords - 1;
        c.Cdw11 = dwordOffset;
        return c;
    }

    /// <summary>Firmware Commit (NVMe 1.4 §5.11): FS bits 2:0, CA bits 5:3, BPID bit 31 of CDW10.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The slot is not 0-7, the action is reserved, or BPID is not 0 or 1.</exception>
    public static NvmeCommand FirmwareCommit(int slot, FirmwareCommitAction action, int bootPartitionId = 0)
    {
        if (slot is < 0 or > 7) { throw new ArgumentOutOfRangeException(nameof(slot), slot, "FS is 0 (the controller chooses) or slot 1-7"); }
        if (!Enum.IsDefined(action)) { throw new ArgumentOutOfRangeException(nameof(action), action, "CA is 0-3, 6 or 7 (4 and 5 are reserved)"); }
        if (bootPartitionId is not (0 or 1)) { throw new ArgumentOutOfRangeException(nameof(bootPartitionId), bootPartitionId, "BPID is 0 or 1"); }
        var c = Make((byte)AdminOpcode.FirmwareCommit, 0);
        c.Cdw10 = (uint)slot | (uint)action << 3 | (uint)bootPartitionId << 31;
        return c;
    }
}
