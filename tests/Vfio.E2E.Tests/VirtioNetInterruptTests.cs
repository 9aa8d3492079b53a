using System.Diagnostics;
using Vfio.Cli.Tools.Net;
using Vfio.Devices;
using Vfio.Kernel;
using Vfio.Net;
using Vfio.VirtioNet;

namespace Vfio.E2E.Tests;

/// <summary>
/// Receive interrupts on QEMU's virtio-net-pci through kernel VFIO: one MSI-X vector per receive queue (an eventfd),
/// asked for only while <see cref="VirtioNetDevice.ReceiveAsync"/> waits on an empty queue.
/// Run: lab/lab.sh run type1 -- dotnet tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=type1 -class Vfio.E2E.Tests.VirtioNetInterruptTests
/// </summary>
[Trait("lab", Lab.NoIommu)]
[Trait("lab", Lab.Type1)]
public sealed class VirtioNetInterruptTests : IDisposable
{
    private readonly VfioDevice _devA, _devB;
    private readonly VirtioNetDevice _a, _b;

    public VirtioNetInterruptTests()
    {
        CliPktgenTests.BindPorts();
        _devA = VfioDevice.Open(PciAddress.Parse(Lab.Net0), new VfioOpenOptions { AllowNoIommu = true });
        // One DMA space for both ports (a container, or an IOAS on the cdev path).
        _devB = VfioDevice.Open(PciAddress.Parse(Lab.Net1), new VfioOpenOptions { AllowNoIommu = true }.SharingDmaWith(_devA));
        _a = VirtioNetDevice.Open(_devA, new VirtioNetOptions { ReceiveInterrupts = true });
        // Each port its own pool: a test below sends on one thread while receiving on another, and a pool is
        // single-threaded (one allocating and freeing thread, as DPDK's per-lcore cache).
        _b = VirtioNetDevice.Open(_devB, new VirtioNetOptions { ReceiveInterrupts = true });
    }

    public void Dispose()
    {
        _b.Dispose();
        _a.Dispose();
        _devB.Dispose();
        _devA.Dispose();
    }

    private static int Send(VirtioNetDevice from, VirtioNetDevice to, ulong first, int count)
    {
        var frames = new PacketBuffer[count];
        int n = from.Pool.Allocate(frames);
        for (int i = 0; i < n; i++)
        {
            TestFrames.Write(frames[i].Room, 64, first + (ulong)i, TestFrames.MacBytes(to.MacAddress), TestFrames.MacBytes(from.MacAddress));
            frames[i].Length = 64;
        }
        int taken = from.Transmit(frames.AsSpan(0, n));
        PacketPool.Free(frames.AsSpan(taken, n - taken));
        return taken;
    }

    [Fact]
    public async Task ReceiveAsyncSleepsOnTheMsixVectorUntilAFrameArrives()
    {
        var ct = TestContext.Current.CancellationToken;
        var rx = new PacketBuffer[32];
        var pending = _b.ReceiveAsync(rx, cancellationToken: ct);
        await Task.Delay(300, ct);
        Assert.False(pending.IsCompleted, "ReceiveAsync returned with nothing sent");

        Assert.Equal(1, Send(_a, _b, 0, 1));
        int n = await pending.AsTask().WaitAsync(TimeSpan.FromSeconds(20), ct);

        Assert.Equal(1, n);
        Assert.True(TestFrames.TryRead(rx[0].Data, out ulong seq));
        Assert.Equal(0UL, seq);
        PacketPool.Free(rx.AsSpan(0, n));
        Assert.Equal(1, _b.InterruptWakeups);
    }

    [Fact]
    public async Task AStreamOfBurstsArrivesThroughReceiveAsyncBothWays()
    {
        var ct = TestContext.Current.CancellationToken;
        foreach (var (from, to) in new[] { (_a, _b), (_b, _a) })
        {
            const int Count = 2000;
            var seen = new bool[Count];
            int received = 0;
            var rx = new PacketBuffer[64];
            var clock = Stopwatch.StartNew();
            // The sender runs on its own thread, paced so the receiver keeps running dry and has to wait.
            var sender = Task.Run(() =>
            {
                for (int sent = 0; sent < Count;)
                {
                    int taken = Send(from, to, (ulong)sent, Math.Min(50, Count - sent));
                    sent += taken;
                    Thread.Sleep(taken == 0 ? 1 : 5);
                    if (clock.Elapsed > TimeSpan.FromSeconds(60)) { return; }
                }
            }, ct);
            while (received < Count)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"{received} of {Count} frames arrived in 90 s");
                int n = await to.ReceiveAsync(rx, cancellationToken: ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), ct);
                for (int i = 0; i < n; i++)
                {
                    Assert.True(TestFrames.TryRead(rx[i].Data, out ulong seq) && seq < Count, "a damaged or unknown frame");
                    Assert.False(seen[seq], $"frame {seq} arrived twice");
                    seen[seq] = true;
                    received++;
                }
                PacketPool.Free(rx.AsSpan(0, n));
            }
            await sender.WaitAsync(TimeSpan.FromSeconds(30), ct);
            Assert.True(to.InterruptWakeups > 0, "the receiver never waited on its vector");
        }
    }
}
