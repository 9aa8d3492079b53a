using System.Text;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>
/// Firmware Image Download and Firmware Commit (NVMe 1.4 §5.12, §5.11): what a controller without them (QEMU 7.2, and
/// the model by default) answers, the model's slots when enabled, and what the driver checks against FRMW and FWUG.
/// </summary>
public sealed class FirmwareTests
{
    private static EmulatedNvme New(int? slots = null, NvmeTransport transport = NvmeTransport.InProcess) =>
        new(transport, new NvmeDeviceOptions { FirmwareSlots = slots });

    private static NvmeController Open(EmulatedNvme dev) =>
        NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    private static IdentifyController Identify(NvmeController ctrl) => IdentifyController.Parse(ctrl.Identify(IdentifyCns.Controller, 0));

    private static byte[] Image(string revision, int length)
    {
        var image = new byte[length];
        for (int i = 0; i < length; i++) { image[i] = (byte)(i * 7 + 3); }
        Encoding.ASCII.GetBytes(revision.PadRight(8), image);
        return image;
    }

    [Fact]
    public void WithoutFirmwareSupportBothCommandsAreInvalidCommandOpcode()
    {
        using var dev = New();
        using var ctrl = Open(dev);
        // QEMU 7.2's report: one slot, read-only.
        Assert.Equal(1, ctrl.Identity.FirmwareUpdates.SlotCount);
        Assert.True(ctrl.Identity.FirmwareUpdates.Slot1ReadOnly);
        Assert.Null(ctrl.Identity.FirmwareUpdateGranularity);

        var download = Assert.Throws<NvmeCommandException>(() => ctrl.DownloadFirmware(new byte[4096]));
        Assert.Equal((byte)GenericStatusCode.InvalidCommandOpcode, download.StatusCode);
        Assert.Contains("Invalid Command Opcode", download.Message);
        Assert.Contains("FirmwareImageDownload", download.Message);
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);

        var commit = Assert.Throws<NvmeCommandException>(() => ctrl.CommitFirmware(1, FirmwareCommitAction.ActivateOnReset));
        Assert.Equal((byte)GenericStatusCode.InvalidCommandOpcode, commit.StatusCode);
        Assert.Contains("Invalid Command Opcode", commit.Message);
        // Replacing the read-only slot never reaches the device.
        Assert.Throws<ArgumentException>(() => ctrl.CommitFirmware(1, FirmwareCommitAction.ReplaceAndActivateOnReset));
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);
    }

    [Fact]
    public void AnImageDownloadedInPiecesActivatesAtTheNextReset()
    {
        using var dev = New(slots: 3);
        using var ctrl = Open(dev);
        Assert.Equal(3, ctrl.Identity.FirmwareUpdates.SlotCount);
        Assert.Equal(4096, ctrl.Identity.FirmwareUpdateGranularity);
        // 100 KiB: two pieces of the driver's 64 KiB admin transfer, each a multiple of FWUG.
        var image = Image("FW2.0", 100 * 1024);
        ctrl.DownloadFirmware(image);
        Assert.Equal(FirmwareCommitResult.ActivatesAtNextReset, ctrl.CommitFirmware(2, FirmwareCommitAction.ReplaceAndActivateOnReset));
        Assert.Equal(image, dev.Model.FirmwareImage(2).ToArray());
        Assert.Equal(2, dev.Model.PendingFirmwareSlot);
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);

        ctrl.Reset();

        Assert.Equal("FW2.0", Identify(ctrl).FirmwareRevision);
        Assert.Equal(2, dev.Model.ActiveFirmwareSlot);
        // Back to the factory image in the read-only slot: activation is allowed there.
        Assert.Equal(FirmwareCommitResult.ActivatesAtNextReset, ctrl.CommitFirmware(1, FirmwareCommitAction.ActivateOnReset));
        ctrl.Reset();
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);
    }

    [Fact]
    public void ActivateNowChangesTheRevisionWithoutAReset()
    {
        using var dev = New(slots: 3);
        using var ctrl = Open(dev);
        Assert.True(ctrl.Identity.FirmwareUpdates.ActivationWithoutReset);
        ctrl.DownloadFirmware(Image("FW3.1", 8192));
        Assert.Equal(FirmwareCommitResult.Activated, ctrl.CommitFirmware(3, FirmwareCommitAction.ReplaceAndActivateNow));
        Assert.Equal("FW3.1", Identify(ctrl).FirmwareRevision);
        Assert.Equal("FW3.1", dev.Model.FirmwareRevision(3));
        Assert.Equal(0, dev.Model.ControllerResets);
    }

    [Fact]
    public void ADownloadCanBeSentInPartsAtOffsets()
    {
        using var dev = New(slots: 2);
        using var ctrl = Open(dev);
        var image = Image("PARTS", 3 * 4096 + 12);
        ctrl.DownloadFirmware(image.AsSpan(0, 8192));
        ctrl.DownloadFirmware(image.AsSpan(8192), offset: 8192);
        Assert.Equal(FirmwareCommitResult.Committed, ctrl.CommitFirmware(0, FirmwareCommitAction.Replace));   // FS 0: the controller picks slot 2
        Assert.Equal(image, dev.Model.FirmwareImage(2).ToArray());
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);
    }

    [Fact]
    public void TheDeviceRefusesACommitWithNothingDownloadedAndOverlappingPieces()
    {
        using var dev = New(slots: 3);
        using var ctrl = Open(dev);
        var empty = Assert.Throws<NvmeCommandException>(() => ctrl.CommitFirmware(2, FirmwareCommitAction.Replace));
        Assert.Equal((byte)CommandSpecificStatusCode.InvalidFirmwareImage, empty.StatusCode);
        Assert.Contains("Invalid Firmware Image", empty.Message);
        var nothingThere = Assert.Throws<NvmeCommandException>(() => ctrl.CommitFirmware(3, FirmwareCommitAction.ActivateOnReset));
        Assert.Equal((byte)CommandSpecificStatusCode.InvalidFirmwareImage, nothingThere.StatusCode);

        ctrl.DownloadFirmware(new byte[8192]);
        var overlap = Assert.Throws<NvmeCommandException>(() => ctrl.DownloadFirmware(new byte[4096], offset: 4096));
        Assert.Equal((byte)CommandSpecificStatusCode.OverlappingRange, overlap.StatusCode);
        Assert.Contains("Overlapping Range", overlap.Message);
        // Boot partitions are not modelled (CAP.BPS = 0).
        var boot = Assert.Throws<NvmeCommandException>(() => ctrl.CommitFirmware(0, FirmwareCommitAction.ActivateBootPartition));
        Assert.Equal((byte)GenericStatusCode.InvalidField, boot.StatusCode);
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);
    }

    [Fact]
    public void BadArgumentsAreRefusedBeforeTheDevice()
    {
        using var dev = New(slots: 3);
        using var ctrl = Open(dev);
        int doorbells = dev.SubmissionDoorbells(0);
        Assert.Equal("image", Assert.Throws<ArgumentException>(() => ctrl.DownloadFirmware([])).ParamName);
        Assert.Equal("image", Assert.Throws<ArgumentException>(() => ctrl.DownloadFirmware(new byte[6])).ParamName);
        Assert.Equal("offset", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.DownloadFirmware(new byte[4096], offset: 2)).ParamName);
        Assert.Equal("offset", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.DownloadFirmware(new byte[4096], offset: -4)).ParamName);
        var fwug = Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.DownloadFirmware(new byte[4096], offset: 1024));
        Assert.Contains("FWUG", fwug.Message);

        var slot = Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.CommitFirmware(4, FirmwareCommitAction.Replace));
        Assert.Equal("slot", slot.ParamName);
        Assert.Contains("FRMW", slot.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.CommitFirmware(-1, FirmwareCommitAction.Replace));
        Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.CommitFirmware(0, FirmwareCommitAction.ActivateOnReset));
        Assert.Equal("slot", Assert.Throws<ArgumentException>(() => ctrl.CommitFirmware(1, FirmwareCommitAction.Replace)).ParamName);
        Assert.Equal("action", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.CommitFirmware(2, (FirmwareCommitAction)4)).ParamName);
        Assert.Equal("bootPartitionId", Assert.Throws<ArgumentOutOfRangeException>(() => ctrl.CommitFirmware(0, FirmwareCommitAction.ActivateBootPartition, 2)).ParamName);
        Assert.Equal(doorbells, dev.SubmissionDoorbells(0));
        Assert.Equal("1.0", Identify(ctrl).FirmwareRevision);
    }

    [Fact]
    public void FirmwareOverAVfioUserSocket()
    {
        using var dev = New(slots: 2, transport: NvmeTransport.Socket);
        using var ctrl = Open(dev);
        ctrl.DownloadFirmware(Image("SOCK1", 70 * 1024));
        Assert.Equal(FirmwareCommitResult.Activated, ctrl.CommitFirmware(2, FirmwareCommitAction.ReplaceAndActivateNow));
        Assert.Equal("SOCK1", Identify(ctrl).FirmwareRevision);
    }
}
