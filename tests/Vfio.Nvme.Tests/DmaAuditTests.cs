using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>The DMA audit on the in-process model.</summary>
public sealed class InProcessDmaAuditTests() : DmaAuditTests(NvmeTransport.InProcess);

/// <summary>The DMA audit over a vfio-user socket (the client's allocator keeps the registry of its IOVAs).</summary>
public sealed class SocketDmaAuditTests() : DmaAuditTests(NvmeTransport.Socket);

/// <summary>
/// The DMA audit (on in every test suite): a PRP entry or PRP list entry the driver corrupts after building it, the
/// way a driver bug would, is caught where the submission entry is written, before the doorbell, and the controller
/// sees neither a doorbell nor a command.
/// </summary>
public abstract class DmaAuditTests(NvmeTransport transport)
{
    private const ulong Page = 4096;

    /// <summary>A controller on the model with one I/O queue.</summary>
    private sealed class Rig : IDisposable
    {
        public Rig(NvmeTransport transport)
        {
            Dev = new EmulatedNvme(transport, new NvmeDeviceOptions { BlockSize = 512, BlockCount = 8192 });
            Controller = NvmeController.Open(Dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
            Queue = Controller.CreateIoQueue();
        }

        public EmulatedNvme Dev { get; }
        public NvmeController Controller { get; }
        public NvmeIoQueue Queue { get; }
        public NvmeNamespace Ns => Controller.Namespaces[0];

        public DmaBuffer Allocate(ulong pages, string name) =>
            Dev.Dma.Allocate(pages * Page, new DmaAllocationOptions { Contiguous = false, Name = name });

        public void Dispose()
        {
            Queue.Dispose();
            Controller.Dispose();
            Dev.Dispose();
        }
    }

    /// <summary>
    /// Submits a read of <paramref name="blocks"/> blocks into <paramref name="buffer"/> after <paramref name="tamper"/>
    /// changed what the driver built; expects the audit to throw and the controller to have seen nothing.
    /// </summary>
    private static DmaAuditViolationException ExpectCaught(Rig rig, int blocks, DmaBuffer buffer, NvmeIoQueue.CommandTamper tamper, bool synchronous = false)
    {
        var (dev, q, ns) = (rig.Dev, rig.Queue, rig.Ns);
        long commands = dev.Model.IoCommands;
        int doorbells = dev.SubmissionDoorbells(q.QueueId);
        q.TamperForTests = tamper;
        var e = synchronous
            ? Assert.Throws<DmaAuditViolationException>(() => q.Read(ns, 0, blocks, buffer))
            : Assert.Throws<DmaAuditViolationException>(() => q.SubmitRead(ns, 0, blocks, buffer));
        q.TamperForTests = null;
        q.RingDoorbell();
        Assert.Equal(doorbells, dev.SubmissionDoorbells(q.QueueId));
        Assert.Equal(commands, dev.Model.IoCommands);
        Assert.Equal(0, q.Outstanding);
        Assert.False(buffer.IsInUse);   // the claim taken for the command was given back
        Assert.Contains("I/O queue", e.Queue);
        return e;
    }

    [Fact]
    public void AddressOutsideEveryBufferIsCaughtBeforeTheDoorbell()
    {
        using var rig = new Rig(transport);
        using var buf = rig.Allocate(1, "data");
        var e = ExpectCaught(rig, 8, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp1 = new DmaAddress(0x7700_0000_0000));
        Assert.Null(e.Buffer);
        Assert.Equal(0x7700_0000_0000UL, e.Address.Value);
        Assert.StartsWith("CID ", e.Command);
        Assert.EndsWith("PRP1", e.Command);
        Assert.Contains("no live DMA buffer", e.Problem);
    }

    [Fact]
    public void APageEntryPastTheEndOfTheBufferIsCaught()
    {
        using var rig = new Rig(transport);
        using var buf = rig.Allocate(2, "two pages");
        // 8 KiB: PRP1 is the first page, PRP2 the second; moved one page on, PRP2 lies just past the buffer's end.
        var e = ExpectCaught(rig, 16, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp2 += Page);
        Assert.EndsWith("PRP2", e.Command);
        Assert.Equal(buf.GetDeviceAddress(Page).Value + Page, e.Address.Value);
        Assert.NotEqual("two pages", e.Buffer);
    }

    [Fact]
    public void AnEntryRunningPastTheLeasedRangeIsCaught()
    {
        using var rig = new Rig(transport);
        using var buf = rig.Allocate(2, "data");
        // A 4 KiB read leases the first page only; PRP1 moved into the second page is the same buffer, outside the lease.
        var e = ExpectCaught(rig, 8, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp1 += Page);
        Assert.Equal("data", e.Buffer);
        Assert.Contains("outside the window", e.Problem);
    }

    [Fact]
    public void AFreedBufferIsCaughtAndNamed()
    {
        using var rig = new Rig(transport);
        using var buf = rig.Allocate(1, "data");
        var freed = rig.Allocate(1, "freed earlier");
        var stale = freed.DeviceAddress;
        freed.Dispose();
        var e = ExpectCaught(rig, 8, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp1 = stale);
        Assert.Null(e.Buffer);
        Assert.Contains("'freed earlier', which was freed", e.Problem);
    }

    [Fact]
    public void ABufferLeasedToAnotherCommandIsCaught()
    {
        using var rig = new Rig(transport);
        var (dev, q, ns) = (rig.Dev, rig.Queue, rig.Ns);
        using var mine = rig.Allocate(1, "mine");
        using var theirs = rig.Allocate(1, "theirs");
        // The first command is placed and leases its buffer; the doorbell is not rung yet.
        long commands = dev.Model.IoCommands;
        int doorbells = dev.SubmissionDoorbells(q.QueueId);
        ushort first = q.SubmitRead(ns, 8, 8, theirs);
        q.TamperForTests = (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp1 = theirs.DeviceAddress;
        var e = Assert.Throws<DmaAuditViolationException>(() => q.SubmitRead(ns, 0, 8, mine));
        q.TamperForTests = null;
        Assert.Equal("theirs", e.Buffer);
        Assert.Contains("not the one leased to this command ('mine')", e.Problem);
        Assert.Equal(doorbells, dev.SubmissionDoorbells(q.QueueId));
        Assert.Equal(1, q.Outstanding);
        // The one doorbell announces the first command only.
        q.RingDoorbell();
        var done = new NvmeIoCompletion[2];
        int got = 0;
        while (got == 0) { got = q.Reap(done); }
        Assert.Equal(1, got);
        Assert.Equal(first, done[0].Tag);
        Assert.Equal(commands + 1, dev.Model.IoCommands);
        Assert.False(mine.IsInUse);
    }

    [Fact]
    public void AWrongPrpListEntryIsCaught()
    {
        using var rig = new Rig(transport);
        using var buf = rig.Allocate(4, "data");
        // 16 KiB: PRP1 and a list of three pages; the second list entry is sent off into nowhere.
        var e = ExpectCaught(rig, 32, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> list) => list[1] = new DmaAddress(0x10));
        Assert.EndsWith("PRP list entry 1", e.Command);
        Assert.Equal(0x10UL, e.Address.Value);
    }

    [Fact]
    public void APrpListPointerOutsideTheSlotsPageIsCaught()
    {
        using var rig = new Rig(transport);
        using var buf = rig.Allocate(4, "data");
        // PRP2 pointed at the data itself instead of the list page: a buffer the command leases, but not as its list.
        var e = ExpectCaught(rig, 32, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp2 = buf.DeviceAddress);
        Assert.EndsWith("PRP2 (list)", e.Command);
        Assert.Equal("data", e.Buffer);
    }

    [Fact]
    public void TheSynchronousPathThrowsTheViolationAndTheQueueGoesOn()
    {
        using var rig = new Rig(transport);
        var (dev, q, ns) = (rig.Dev, rig.Queue, rig.Ns);
        using var buf = rig.Allocate(2, "data");
        ExpectCaught(rig, 16, buf, (ushort _, ref NvmeCommand cmd, Span<DmaAddress> _) => cmd.Prp2 = default, synchronous: true);
        // Nothing reached the device, so nothing is left to reset: the next, untampered, I/O works.
        buf.Span.Fill(0x3C);
        q.Write(ns, 0, 16, buf);
        buf.Span.Clear();
        q.Read(ns, 0, 16, buf);
        Assert.All(buf.Span.ToArray(), b => Assert.Equal(0x3C, b));
    }

    [Fact]
    public void NormalIoOfEveryShapePassesTheAudit()
    {
        using var rig = new Rig(transport);
        var (dev, q, ns) = (rig.Dev, rig.Queue, rig.Ns);
        using var buf = rig.Allocate(64, "data");
        Assert.True(DmaAudit.Enabled);
        Assert.NotNull(buf.Registry);
        // One page, two pages, a list, an offset start, and a bounce (managed memory) each way.
        foreach (var (blocks, offset) in new[] { (1, 0UL), (8, 0UL), (16, 512UL), (200, 1024UL), (512, 0UL) })
        {
            buf.Span.Fill((byte)blocks);
            q.Write(ns, 100, blocks, buf, offset);
            q.Read(ns, 100, blocks, buf, offset);
        }
        var managed = new byte[8192];
        q.WriteBounced(ns, 0, managed);
        q.ReadBounced(ns, 0, managed);
        q.Flush(ns);
        Assert.Equal(2, q.BouncedOperations);
    }
}
