using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>How a Firmware Commit ended (NVMe 1.4 §5.11).</summary>
public enum FirmwareCommitResult
{
    /// <summary>The image was stored (CA 000b, 110b); nothing was activated.</summary>
    Committed,
    /// <summary>The slot becomes active at the next controller reset (CA 001b, 010b).</summary>
    ActivatesAtNextReset,
    /// <summary>The new firmware runs now (CA 011b, 111b).</summary>
    Activated,
    /// <summary>Committed; status 0Bh: the new firmware runs after a conventional reset (power cycle, PCIe hot reset).</summary>
    RequiresConventionalReset,
    /// <summary>Committed; status 10h: the new firmware runs after an NVM subsystem reset (NSSR).</summary>
    RequiresNvmSubsystemReset,
    /// <summary>Committed; status 11h: the new firmware runs after a controller level reset (<see cref="NvmeController.Reset"/>).</summary>
    RequiresControllerLevelReset,
}

// Firmware Image Download and Firmware Commit (NVMe 1.4 §5.12, §5.11), checked against FRMW and FWUG of Identify
// Controller before anything is sent. QEMU 7.2 answers both opcodes with Invalid Command Opcode; that surfaces as
// an NvmeCommandException, the controller staying usable.
public sealed partial class NvmeController
{
    /// <summary>
    /// Sends <paramref name="image"/> with Firmware Image Download, in pieces of at most
    /// <see cref="MaxAdminTransferBytes"/>, each a multiple of FWUG (Identify Controller byte 319) when the controller
    /// gives one; commit it with <see cref="CommitFirmware"/>. Pieces go in order, none overlapping (§5.12).
    /// </summary>
    /// <param name="image">The image, or a part of it; a whole number of dwords.</param>
    /// <param name="offset">Where <paramref name="image"/> starts in the whole image, in bytes (a multiple of 4, and of FWUG).</param>
    /// <exception cref="ArgumentException">The image is empty or not a whole number of dwords.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The offset is negative, not dword aligned, not a multiple of FWUG, or the image ends past 16 GiB.</exception>
    /// <exception cref="NvmeException">FWUG is larger than what one admin command of the driver moves.</exception>
    /// <exception cref="NvmeCommandException">The controller refused a piece (Invalid Command Opcode when it has no firmware update).</exception>
    public void DownloadFirmware(ReadOnlySpan<byte> image, long offset = 0)
    {
        if (image.IsEmpty || (image.Length & 3) != 0)
        {
            throw new ArgumentException($"a firmware image is a whole number of dwords (NUMD counts dwords, §5.12); got {image.Length} bytes", nameof(image));
        }
        if (offset < 0 || (offset & 3) != 0 || (offset + image.Length) / 4 > uint.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, "OFST is a dword offset: 0 or more, a multiple of 4, and the image ends within 2^32 dwords");
        }
        int? granularity = Identity.FirmwareUpdateGranularity;
        int piece = MaxAdminTransferBytes;
        if (granularity is { } g)
        {
            if (offset % g != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), offset, $"the offset is a multiple of FWUG ({g} bytes on {_device.Address})");
            }
            piece = piece / g * g;
            if (piece == 0)
            {
                throw new NvmeException($"the controller's firmware update granularity (FWUG) is {g} bytes, more than the {MaxAdminTransferBytes} " +
                    "bytes one admin command of this driver moves", _device.Address);
            }
        }
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            for (int done = 0; done < image.Length; done += piece)
            {
                int length = Math.Min(piece, image.Length - done);
                // The data path copies a ToDevice buffer into the driver's DMA buffer and never writes it, so the
                // read-only image can be handed over as a span.
                var data = MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(image[done..]), length);
                var command = NvmeCommand.FirmwareImageDownload((uint)((offset + done) / 4), (uint)(length / 4));
                ExecuteAdminWithDataLocked(command, data, NvmeDataDirection.ToDevice);
            }
        }
        LogFirmwareDownloaded(_logger, _device.Address, image.Length, offset);
    }

    /// <summary>
    /// Firmware Commit: stores the downloaded image in <paramref name="slot"/> and/or activates it, as
    /// <paramref name="action"/> says. The slot is checked against FRMW (Identify Controller byte 260) first.
    /// <see cref="Identity"/> is read once at open: read Identify again to see the new revision.
    /// </summary>
    /// <param name="slot">FS: 1 to the controller's slot count, or 0 to let the controller choose (not for <see cref="FirmwareCommitAction.ActivateOnReset"/>).</param>
    /// <param name="action">CA.</param>
    /// <param name="bootPartitionId">BPID (0 or 1) for the boot partition actions.</param>
    /// <returns>What happened; the statuses that mean "committed, activation needs a reset" are results, not errors.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The slot is outside the controller's slots, the action is reserved, or BPID is not 0 or 1.</exception>
    /// <exception cref="ArgumentException">Slot 1 is read-only and the action replaces it, or activation without reset is asked of a controller without it.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the commit (Invalid Firmware Image, Invalid Firmware Slot, Invalid Command Opcode...).</exception>
    public FirmwareCommitResult CommitFirmware(int slot, FirmwareCommitAction action, int bootPartitionId = 0)
    {
        if (!Enum.IsDefined(action)) { throw new ArgumentOutOfRangeException(nameof(action), action, "CA is 0-3, 6 or 7 (4 and 5 are reserved)"); }
        if (bootPartitionId is not (0 or 1)) { throw new ArgumentOutOfRangeException(nameof(bootPartitionId), bootPartitionId, "BPID is 0 or 1"); }
        var frmw = Identity.FirmwareUpdates;
        bool bootPartition = action is FirmwareCommitAction.ReplaceBootPartition or FirmwareCommitAction.ActivateBootPartition;
        if (!bootPartition)
        {
            int lowest = action == FirmwareCommitAction.ActivateOnReset ? 1 : 0;
            if (slot < lowest || slot > frmw.SlotCount)
            {
                throw new ArgumentOutOfRangeException(nameof(slot), slot, frmw.SlotCount == 0
                    ? $"the controller at {_device.Address} reports no firmware slots (FRMW bits 3:1 are 0)"
                    : $"FS is {lowest}-{frmw.SlotCount} on {_device.Address} (FRMW bits 3:1: {frmw.SlotCount} slots{(lowest == 0 ? ", 0: the controller chooses" : "")})");
            }
            if (slot == 1 && frmw.Slot1ReadOnly && action != FirmwareCommitAction.ActivateOnReset)
            {
                throw new ArgumentException($"slot 1 of {_device.Address} is read-only (FRMW bit 0): it can be activated, not replaced", nameof(slot));
            }
            if (action == FirmwareCommitAction.ReplaceAndActivateNow && !frmw.ActivationWithoutReset)
            {
                throw new ArgumentException($"the controller at {_device.Address} does not activate firmware without a reset (FRMW bit 4 is clear); " +
                    "use ReplaceAndActivateOnReset and reset the controller", nameof(action));
            }
        }
        else if (slot is < 0 or > 7)
        {
            throw new ArgumentOutOfRangeException(nameof(slot), slot, "FS is 0-7");
        }
        var result = action switch
        {
            FirmwareCommitAction.Replace or FirmwareCommitAction.ReplaceBootPartition => FirmwareCommitResult.Committed,
            FirmwareCommitAction.ReplaceAndActivateOnReset or FirmwareCommitAction.ActivateOnReset => FirmwareCommitResult.ActivatesAtNextReset,
            _ => FirmwareCommitResult.Activated,
        };
        try
        {
            ExecuteAdmin(NvmeCommand.FirmwareCommit(slot, action, bootPartitionId));
        }
        catch (NvmeCommandException e) when (e.Status.Type == StatusCodeType.CommandSpecific && ResetNeeded(e.Status.Code) is { } needed)
        {
            result = needed;
        }
        LogFirmwareCommitted(_logger, _device.Address, slot, action, result);
        return result;
    }

    /// <summary>The command specific statuses that report a successful commit whose activation waits for a reset (§5.11, Figure 128).</summary>
    private static FirmwareCommitResult? ResetNeeded(byte code) => (CommandSpecificStatusCode)code switch
    {
        CommandSpecificStatusCode.FirmwareActivationRequiresConventionalReset => FirmwareCommitResult.RequiresConventionalReset,
        CommandSpecificStatusCode.FirmwareActivationRequiresNvmSubsystemReset => FirmwareCommitResult.RequiresNvmSubsystemReset,
        CommandSpecificStatusCode.FirmwareActivationRequiresControllerLevelReset => FirmwareCommitResult.RequiresControllerLevelReset,
        _ => null,
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: downloaded {Bytes} bytes of firmware at offset {Offset}")]
    private static partial void LogFirmwareDownloaded(ILogger logger, PciAddress device, int bytes, long offset);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Device}: firmware commit to slot {Slot} ({Action}): {Result}")]
    private static partial void LogFirmwareCommitted(ILogger logger, PciAddress device, int slot, FirmwareCommitAction action, FirmwareCommitResult result);
}
