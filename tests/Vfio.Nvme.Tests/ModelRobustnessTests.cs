using System.Runtime.InteropServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

public sealed class InProcessModelRobustnessTests() : ModelRobustnessTests(NvmeTransport.InProcess);

public sealed class SocketModelRobustnessTests() : ModelRobustnessTests(NvmeTransport.Socket);

public sealed class SocketMessageDmaModelRobustnessTests() : ModelRobustnessTests(NvmeTransport.SocketMessages);

/// <summary>
/// A host that sends the emulated controller malformed commands: each gets an NVMe error status, register misuse
/// is reported as a protocol violation, and the controller goes on serving well-formed commands.
/// </summary>
public abstract class ModelRobustnessTests(NvmeTransport transport)
{
    private static readonly DmaAddress Unmapped = new(0x7700_0000_0000);   // never handed out by either allocator

    private static NvmeController Open(EmulatedNvme dev) =>
        NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    private static NvmeStatus AdminStatus(NvmeController c, NvmeCommand command) =>
        Assert.Throws<NvmeCommandException>(() => c.ExecuteAdmin(command)).Status;

    private static void AssertStatus(NvmeStatus status, StatusCodeType type, byte code)
    {
        Assert.Equal(type, status.Type);
        Assert.Equal(code, status.Code);
    }

    [Fact]
    public void MalformedAdminCommandsGetNvmeErrors()
    {
        using var dev = new EmulatedNvme(transport);
        dev.ExpectViolations();
        using var c = Open(dev);
        int granted = c.GrantedIoQueues;
        using var page = dev.Dma.Allocate(4096);
        DmaAddress at = page.DeviceAddress;

        AssertStatus(AdminStatus(c, new NvmeCommand { Cdw0 = 0xC5 }), StatusCodeType.Generic, 0x01);                      // unknown opcode
        AssertStatus(AdminStatus(c, NvmeCommand.Identify((IdentifyCns)0x55, 0, at, default)), StatusCodeType.Generic, 0x02); // unknown CNS
        AssertStatus(AdminStatus(c, NvmeCommand.Identify(IdentifyCns.Namespace, 7, at, default)), StatusCodeType.Generic, 0x0B); // no such namespace
        AssertStatus(AdminStatus(c, NvmeCommand.Identify(IdentifyCns.Controller, 0, Unmapped, default)), StatusCodeType.Generic, 0x04);
        AssertStatus(AdminStatus(c, NvmeCommand.Identify(IdentifyCns.Controller, 0, at + 2, default)), StatusCodeType.Generic, 0x13);
        AssertStatus(AdminStatus(c, NvmeCommand.CreateIoCompletionQueue(granted + 1, 16, at, false, 0)), StatusCodeType.CommandSpecific, 0x01);
        AssertStatus(AdminStatus(c, NvmeCommand.CreateIoCompletionQueue(granted, 4096, at, false, 0)), StatusCodeType.CommandSpecific, 0x02);   // over CAP.MQES
        AssertStatus(AdminStatus(c, NvmeCommand.CreateIoCompletionQueue(granted, 16, at, true, 40)), StatusCodeType.CommandSpecific, 0x08);
        AssertStatus(AdminStatus(c, NvmeCommand.CreateIoCompletionQueue(granted, 16, at + 512, false, 0)), StatusCodeType.Generic, 0x02);
        AssertStatus(AdminStatus(c, NvmeCommand.CreateIoSubmissionQueue(granted, 16, at, 9)), StatusCodeType.CommandSpecific, 0x00);
        AssertStatus(AdminStatus(c, NvmeCommand.DeleteIoSubmissionQueue(33)), StatusCodeType.CommandSpecific, 0x01);
        AssertStatus(AdminStatus(c, NvmeCommand.DeleteIoCompletionQueue(0)), StatusCodeType.CommandSpecific, 0x01);
        AssertStatus(AdminStatus(c, NvmeCommand.SetNumberOfQueues(8, 8)), StatusCodeType.Generic, 0x0C);                   // once per enable
        Assert.Contains(dev.Violations, v => v.Contains(Unmapped.ToString(), StringComparison.Ordinal));

        // The controller is unharmed: the driver's I/O works.
        using var q = c.CreateIoQueue();
        page.Span.Fill(0x3C);
        q.Write(c.Namespaces[0], 3, 8, page);
        page.Span.Clear();
        q.Read(c.Namespaces[0], 3, 8, page);
        Assert.Equal(0x3C, page.Span[4095]);
    }

    [Fact]
    public void MalformedIoCommandsGetNvmeErrorsAndBadDoorbellsAreIgnored()
    {
        using var dev = new EmulatedNvme(transport, new NvmeDeviceOptions { BlockCount = 1024 });
        dev.ExpectViolations();
        using var sq = dev.Dma.Allocate(4096, new DmaAllocationOptions { Contiguous = true });
        using var cq = dev.Dma.Allocate(4096, new DmaAllocationOptions { Contiguous = true });
        using var data = dev.Dma.Allocate(8192, new DmaAllocationOptions { Contiguous = true });
        using var c = Open(dev);
        using var bar = dev.OpenRegion(PciRegion.Bar0);
        int qid = c.GrantedIoQueues;
        c.ExecuteAdmin(NvmeCommand.CreateIoCompletionQueue(qid, 16, cq.DeviceAddress, false, 0));
        c.ExecuteAdmin(NvmeCommand.CreateIoSubmissionQueue(qid, 16, sq.DeviceAddress, qid));
        DmaAddress buf = data.DeviceAddress;
        NvmeCommand[] commands =
        [
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0, 8, Unmapped, default),       // data buffer the host never mapped
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 1020, 8, buf, default),         // past the last LBA
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, ulong.MaxValue - 2, 8, buf, default), // LBA that would wrap
            NvmeCommand.ReadWrite(NvmOpcode.Write, 2, 0, 1, buf, default),           // no namespace 2
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0, 16, buf, buf + 4100),        // PRP2 not page aligned
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0, 512, buf, buf + 4096),       // 256 KiB: over MDTS (128 KiB)
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0, 24, buf, Unmapped),          // PRP list the host never mapped
            new NvmeCommand { Cdw0 = 0x7F, Nsid = 1 },                               // no such opcode
            NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 0, 8, buf, default),            // and a good one after them all
        ];
        (StatusCodeType, byte)[] expected =
        [
            (StatusCodeType.Generic, 0x04), (StatusCodeType.Generic, 0x80), (StatusCodeType.Generic, 0x80),
            (StatusCodeType.Generic, 0x0B), (StatusCodeType.Generic, 0x13), (StatusCodeType.Generic, 0x02),
            (StatusCodeType.Generic, 0x04), (StatusCodeType.Generic, 0x01), (StatusCodeType.Generic, 0x00),
        ];
        for (int i = 0; i < commands.Length; i++)
        {
            commands[i].CommandId = (ushort)(100 + i);
            MemoryMarshal.Write(sq.Span[(i * NvmeCommand.Size)..], in commands[i]);
        }
        // Doorbells of no queue, and a tail beyond the queue: ignored, reported, nothing else happens.
        bar.Write32(ControllerRegister.DoorbellBase + 2 * 30 * 4, 1);
        bar.Write32(ControllerRegister.DoorbellBase + 2 * (ulong)qid * 4, 16);
        bar.Write32(ControllerRegister.DoorbellBase + 2 * (ulong)qid * 4, (uint)commands.Length);
        for (int i = 0; i < commands.Length; i++)
        {
            var e = MemoryMarshal.Read<NvmeCompletion>(cq.Span[(i * NvmeCompletion.Size)..]);
            Assert.True(e.Phase, $"completion {i} not posted");
            Assert.Equal((ushort)(100 + i), e.CommandId);
            Assert.Equal(expected[i], (e.Status.Type, e.Status.Code));
        }
        Assert.Contains(dev.Violations, v => v.Contains("SQ 30", StringComparison.Ordinal));
        Assert.Contains(dev.Violations, v => v.Contains("beyond its size", StringComparison.Ordinal));
        Assert.True(dev.Enabled);
        bar.Write32(ControllerRegister.DoorbellBase + (2 * (ulong)qid + 1) * 4, (uint)commands.Length);
        c.ExecuteAdmin(NvmeCommand.DeleteIoSubmissionQueue(qid));
        c.ExecuteAdmin(NvmeCommand.DeleteIoCompletionQueue(qid));
    }

    [Fact]
    public void ACompletionQueueInUnmappedMemoryIsAFatalStatusThatResetClears()
    {
        using var dev = new EmulatedNvme(transport);
        dev.ExpectViolations();
        using var sq = dev.Dma.Allocate(4096, new DmaAllocationOptions { Contiguous = true });
        using var c = Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1), CommandTimeout = TimeSpan.FromSeconds(2) });
        using var bar = dev.OpenRegion(PciRegion.Bar0);
        int qid = c.GrantedIoQueues;
        c.ExecuteAdmin(NvmeCommand.CreateIoCompletionQueue(qid, 16, Unmapped, false, 0));
        c.ExecuteAdmin(NvmeCommand.CreateIoSubmissionQueue(qid, 16, sq.DeviceAddress, qid));
        var flush = NvmeCommand.Flush(1);
        MemoryMarshal.Write(sq.Span, in flush);
        bar.Write32(ControllerRegister.DoorbellBase + 2 * (ulong)qid * 4, 1);
        Assert.Contains(dev.Violations, v => v.Contains("cannot be written", StringComparison.Ordinal));
        Assert.Throws<NvmeControllerFatalException>(() => c.ExecuteAdmin(NvmeCommand.Identify(IdentifyCns.Controller, 0, Unmapped, default)));
        c.Reset();
        using var q = c.CreateIoQueue();
        q.Flush(c.Namespaces[0]);
    }

    private static NvmeController Open(EmulatedNvme dev, NvmeControllerOptions options) => NvmeController.Open(dev, options);
}
