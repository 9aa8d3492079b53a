using System.Text;
using Vfio.Spec.Nvme;

namespace Vfio.Emulation.Nvme;

// Firmware Image Download and Firmware Commit (NVMe 1.4 §5.12, §5.11). By default the model answers both with
// Invalid Command Opcode, as QEMU 7.2's nvme device does, and reports one read-only slot. With
// NvmeDeviceOptions.FirmwareSlots set it keeps that many slots: slot 1 holds the factory image "1.0" and is read-only,
// the others take downloaded images; a commit activates at the next controller reset (CA 001b, 010b) or at once
// (CA 011b, FRMW bit 4). The image's first 8 bytes, when printable ASCII, are its firmware revision (a convention of
// this model: real images carry theirs in vendor formats).
public sealed partial class NvmeDevice
{
    /// <summary>The largest image the model accepts (OFST + NUMD beyond it: Invalid Field).</summary>
    public const int MaxFirmwareImageBytes = 1 << 20;

    /// <summary>The revision of the factory image in slot 1.</summary>
    public const string FactoryFirmwareRevision = "1.0";

    /// <summary>FWUG the model reports with firmware slots: 1 (4 KiB), so the driver's piece alignment is exercised.</summary>
    private const byte FirmwareGranularityUnits = 1;

    private readonly byte[]?[] _firmwareImages = new byte[8][];
    private readonly string?[] _firmwareRevisions = new string?[8];
    private byte[]? _download;
    private int _downloadLength;
    private int _activeFirmwareSlot = 1;
    private int _pendingFirmwareSlot;

    private int FirmwareSlotCount => _options.FirmwareSlots ?? 0;

    /// <summary>The slot whose firmware runs (1-7).</summary>
    public int ActiveFirmwareSlot { get { lock (_lock) { return _activeFirmwareSlot; } } }

    /// <summary>The slot committed for activation at the next reset, or 0.</summary>
    public int PendingFirmwareSlot { get { lock (_lock) { return _pendingFirmwareSlot; } } }

    /// <summary>The revision of the image in <paramref name="slot"/> (1-7), or null for an empty slot (for the firmware slot log).</summary>
    public string? FirmwareRevision(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slot, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slot, 7);
        lock (_lock) { return slot == 1 ? FactoryFirmwareRevision : _firmwareRevisions[slot]; }
    }

    /// <summary>The image committed to <paramref name="slot"/> (2-7), or empty.</summary>
    public ReadOnlyMemory<byte> FirmwareImage(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slot, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slot, 7);
        lock (_lock) { return _firmwareImages[slot] ?? []; }
    }

    /// <summary>FR, FRMW, FWUG and OACS bit 2 of Identify Controller (§5.15.2.2, Figure 247).</summary>
    private void IdentifyFirmware(Span<byte> data)
    {
        Pad(data.Slice(64, 8), _activeFirmwareSlot == 1 ? FactoryFirmwareRevision : _firmwareRevisions[_activeFirmwareSlot]!);
        if (FirmwareSlotCount == 0)
        {
            data[260] = 1 << 1 | 1;                                         // FRMW: one slot, read-only (QEMU's)
            return;
        }
        data[256] |= 1 << 2;                                                // OACS: Firmware Commit and Image Download
        data[260] = (byte)(FirmwareSlotCount << 1 | 1 | 1 << 4);            // FRMW: slots, slot 1 read-only, activation without reset
        data[319] = FirmwareGranularityUnits;                               // FWUG
    }

    private void ActivatePendingFirmware()
    {
        if (_pendingFirmwareSlot == 0) { return; }
        _activeFirmwareSlot = _pendingFirmwareSlot;
        _pendingFirmwareSlot = 0;
    }

    private NvmeStatus FirmwareImageDownload(in NvmeCommand c)
    {
        if (FirmwareSlotCount == 0) { return Generic(GenericStatusCode.InvalidCommandOpcode); }
        ulong length = ((ulong)c.Cdw10 + 1) * 4, offset = (ulong)c.Cdw11 * 4;
        if (offset + length > MaxFirmwareImageBytes) { return Generic(GenericStatusCode.InvalidField); }
        if (_options.Mdts != 0 && length > 4096UL << _options.Mdts) { return Generic(GenericStatusCode.InvalidField); }
        // OFST and NUMD are multiples of FWUG (§5.12); the last piece of an image may be shorter.
        if (offset % (FirmwareGranularityUnits * 4096UL) != 0) { return Generic(GenericStatusCode.InvalidField); }
        if (offset == 0)
        {
            _downloadLength = 0;                                            // a piece at offset 0 starts a new image
        }
        else if (offset < (ulong)_downloadLength)
        {
            return Specific(CommandSpecificStatusCode.OverlappingRange);
        }
        var piece = new byte[length];
        var status = Transfer(c.Prp1, c.Prp2, piece.Length, piece, toHost: false);
        if (!status.IsSuccess) { return status; }
        _download ??= new byte[MaxFirmwareImageBytes];
        piece.CopyTo(_download.AsSpan((int)offset));
        _downloadLength = (int)(offset + length);
        return default;
    }

    private NvmeStatus FirmwareCommit(in NvmeCommand c)
    {
        if (FirmwareSlotCount == 0) { return Generic(GenericStatusCode.InvalidCommandOpcode); }
        int slot = (int)(c.Cdw10 & 7);
        var action = (FirmwareCommitAction)((c.Cdw10 >> 3) & 7);
        // No boot partitions (CAP.BPS = 0), and 100b/101b are reserved.
        if (action is not (FirmwareCommitAction.Replace or FirmwareCommitAction.ReplaceAndActivateOnReset
            or FirmwareCommitAction.ActivateOnReset or FirmwareCommitAction.ReplaceAndActivateNow))
        {
            return Generic(GenericStatusCode.InvalidField);
        }
        bool replace = action != FirmwareCommitAction.ActivateOnReset;
        if (slot == 0)
        {
            if (!replace) { return Specific(CommandSpecificStatusCode.InvalidFirmwareSlot); }
            // FS 0: the controller chooses; the first writable slot that is not running.
            slot = Enumerable.Range(2, Math.Max(0, FirmwareSlotCount - 1)).FirstOrDefault(s => s != _activeFirmwareSlot);
            if (slot == 0) { return Specific(CommandSpecificStatusCode.InvalidFirmwareSlot); }
        }
        if (slot > FirmwareSlotCount || (replace && slot == 1)) { return Specific(CommandSpecificStatusCode.InvalidFirmwareSlot); }
        if (replace)
        {
            if (_downloadLength == 0 || _download is null) { return Specific(CommandSpecificStatusCode.InvalidFirmwareImage); }
            var image = _download.AsSpan(0, _downloadLength).ToArray();
            _firmwareImages[slot] = image;
            _firmwareRevisions[slot] = RevisionOf(image, slot);
            _downloadLength = 0;
        }
        else if (slot != 1 && _firmwareImages[slot] is null)
        {
            return Specific(CommandSpecificStatusCode.InvalidFirmwareImage);
        }
        switch (action)
        {
            case FirmwareCommitAction.ReplaceAndActivateOnReset or FirmwareCommitAction.ActivateOnReset:
                _pendingFirmwareSlot = slot;
                break;
            case FirmwareCommitAction.ReplaceAndActivateNow:
                _activeFirmwareSlot = slot;
                _pendingFirmwareSlot = 0;
                break;
        }
        return default;
    }

    private static string RevisionOf(ReadOnlySpan<byte> image, int slot)
    {
        var head = image[..Math.Min(8, image.Length)];
        foreach (byte b in head)
        {
            if (b is < (byte)' ' or > (byte)'~') { return $"IMG-S{slot}"; }
        }
        string text = Encoding.ASCII.GetString(head).Trim();
        return text.Length == 0 ? $"IMG-S{slot}" : text;
    }
}
