using Vfio.Cli.Tools.Net;
using Vfio.Emulation.VirtioNet;
using Vfio.Net;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Tests.Emulation;
using Vfio.VirtioNet.Virtio;
using static Vfio.Emulation.VirtioNet.VirtioNetHostileMode;

namespace Vfio.VirtioNet.Tests;

public sealed class InProcessHostileDeviceTests() : HostileDeviceTests(VirtioTransport.InProcess);

public sealed class SocketHostileDeviceTests() : HostileDeviceTests(VirtioTransport.Socket);

public sealed class SocketMessageDmaHostileDeviceTests() : HostileDeviceTests(VirtioTransport.SocketMessages);

/// <summary>The virtqueue a hostile mode is aimed at.</summary>
public enum HostileTarget
{
    /// <summary>Port B's receiveq1: B's driver reads what B's model wrote for the frames A sent.</summary>
    Receive,

    /// <summary>Port A's transmitq1.</summary>
    Transmit,

    /// <summary>Port A's control queue, during <see cref="VirtioNetDevice.Open"/> (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET).</summary>
    Control,
}

/// <summary>
/// The driver against a device that breaks the protocol on purpose (<see cref="VirtioNetHostileMode"/>): every mode on
/// every queue kind and transport, once and continuously, ends in <see cref="DeviceProtocolViolationException"/> or in
/// correct data; never in a crash, a hang (each case has a time limit), an access outside a buffer or a double free
/// (the pools, owned by the test, must end with every buffer back exactly once). Afterwards the other queues keep
/// working, and a reset brings the faulted one back.
/// </summary>
public abstract class HostileDeviceTests(VirtioTransport transport)
{
    private const int CaseTimeout = 60_000;
    private const ushort QueueSize = 64;
    private static readonly byte[] Broadcast = TestFrames.Broadcast;

    /// <summary>The modes that corrupt the used ring or a received header: the driver must detect them.</summary>
    private static readonly VirtioNetHostileMode[] Detected = [DuplicateUsedId, UnknownUsedId, OutOfRangeUsedId, UsedLengthPastBuffer, UsedIndexJump, NumBuffersOutOfRange];

    public static TheoryData<VirtioNetHostileMode, HostileTarget, bool> RingModes()
    {
        var data = new TheoryData<VirtioNetHostileMode, HostileTarget, bool>();
        foreach (var mode in (VirtioNetHostileMode[])[.. Detected, RewriteDescriptors])
        {
            foreach (var target in Enum.GetValues<HostileTarget>())
            {
                data.Add(mode, target, false);
                data.Add(mode, target, true);
            }
        }
        return data;
    }

    /// <summary>Whether <paramref name="mode"/> aimed at <paramref name="target"/> corrupts a value the driver reads (num_buffers is only in received packets).</summary>
    private static bool MustBeDetected(VirtioNetHostileMode mode, HostileTarget target) =>
        Array.IndexOf(Detected, mode) >= 0 && (mode != NumBuffersOutOfRange || target == HostileTarget.Receive);

    /// <summary>The check that must have caught <paramref name="mode"/> (either of two where the order of checks decides).</summary>
    private static void AssertCaughtBy(VirtioNetHostileMode mode, DeviceProtocolViolationException e)
    {
        string[] expected = mode switch
        {
            // A duplicate is caught by id when other chains are in flight, else by used idx outrunning them.
            DuplicateUsedId => ["not the head of a chain in flight", "chain(s) are in flight"],
            UnknownUsedId => ["not the head of a chain in flight", "outside the queue"],
            OutOfRangeUsedId => ["outside the queue"],
            UsedLengthPastBuffer => ["exceeds the"],
            UsedIndexJump => ["chain(s) are in flight"],
            NumBuffersOutOfRange => ["num_buffers 0"],
            _ => [],
        };
        Assert.True(expected.Any(e.Seen.Contains), $"{mode} was caught as: {e.Where}: {e.Seen}");
    }

    [Theory(Timeout = CaseTimeout)]
    [MemberData(nameof(RingModes))]
    public async Task EveryRingModeEndsInTheNamedExceptionOrCorrectData(VirtioNetHostileMode mode, HostileTarget target, bool continuously)
    {
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            if (target == HostileTarget.Control) { RunControl(mode, continuously, ct); }
            else { RunDataPath(mode, target, continuously, ct); }
        }, ct);
    }

    private void RunDataPath(VirtioNetHostileMode mode, HostileTarget target, bool continuously, CancellationToken ct)
    {
        using var rig = new Rig(transport);
        var (a, b) = rig.Open();
        // Warm-up: both directions work, and the receive rings are left with free descriptors (below the refill
        // threshold), so an "unknown" id can be one in range.
        Exchange(a, b, 8, 0, ct);
        Exchange(b, a, 8, 0, ct);

        var port = target == HostileTarget.Receive ? rig.DevB : rig.DevA;
        port.Model.HostileQueue = target == HostileTarget.Receive ? VirtioNetQueues.Receive(0) : VirtioNetQueues.Transmit(0);
        port.Model.HostileContinuously = continuously;
        port.Model.Hostile = mode;
        DeviceProtocolViolationException? seen = null;
        try
        {
            for (int round = 0; round < 3; round++)
            {
                Exchange(a, b, 8, 100 + 8UL * (ulong)round, ct);
                Assert.Equal(0, a.TransmitInFlight());
            }
        }
        catch (DeviceProtocolViolationException e)
        {
            seen = e;
        }
        port.Model.Hostile = None;

        if (MustBeDetected(mode, target))
        {
            Assert.NotNull(seen);
            AssertCaughtBy(mode, seen);
            Assert.Equal(port.Address, seen.Device);
            Assert.True(port.Model.HostileActs > 0);
            // The faulted queue says so on every later use...
            if (target == HostileTarget.Receive)
            {
                Assert.IsType<DeviceProtocolViolationException>(Assert.Throws<VirtqueueFaultedException>(() => b.Receive(new PacketBuffer[4])).InnerException);
            }
            else
            {
                Assert.Throws<VirtqueueFaultedException>(() => a.TransmitInFlight());
                Assert.Throws<VirtqueueFaultedException>(() => Send(a, 1, 999));
            }
            // ...while the other direction goes on: B's transmit queue and A's receive queue are healthy.
            Exchange(b, a, 8, 500, ct);
            // A reset brings the faulted queue back; what it held returns to the pool once (the pool asserts it).
            (target == HostileTarget.Receive ? b : a).Reset();
        }
        else
        {
            Assert.Null(seen);
            Assert.False(port.Model.HostileActs == 0 && mode != NumBuffersOutOfRange, "the mode never applied");
        }
        Exchange(a, b, 16, 1000, ct);
        Exchange(b, a, 16, 2000, ct);
        rig.CloseAndCheckPools();
    }

    private void RunControl(VirtioNetHostileMode mode, bool continuously, CancellationToken ct)
    {
        using var rig = new Rig(transport, maxPairs: 2);
        rig.DevA.Model.HostileQueue = VirtioNetQueues.Control(2);
        rig.DevA.Model.HostileContinuously = continuously;
        rig.DevA.Model.Hostile = mode;
        var options = new VirtioNetOptions { QueuePairs = 2 };
        if (MustBeDetected(mode, HostileTarget.Control))
        {
            var e = Assert.Throws<DeviceProtocolViolationException>(() => rig.OpenA(options));
            Assert.Contains("control", e.Where);
            AssertCaughtBy(mode, e);
            Assert.True(rig.DevA.Model.HostileActs > 0);
            rig.DevA.Model.Hostile = None;
        }
        var (a, b) = rig.Open(options);
        rig.DevA.Model.Hostile = None;
        Assert.Equal(2, a.QueuePairCount);
        Exchange(a, b, 16, 0, ct);
        Exchange(b, a, 16, 100, ct);
        rig.CloseAndCheckPools();
    }

    public static TheoryData<VirtioNetHostileMode> DetectedModes() => [.. Detected];

    [Theory(Timeout = CaseTimeout)]
    [MemberData(nameof(DetectedModes))]
    public async Task AFaultOnOneQueuePairLeavesTheOtherPairWorking(VirtioNetHostileMode mode)
    {
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            using var rig = new Rig(transport, maxPairs: 2);
            var (a, b) = rig.Open(new VirtioNetOptions { QueuePairs = 2 });
            Exchange(a, b, 8, 0, ct, queuePair: 1);
            rig.DevB.Model.HostileQueue = VirtioNetQueues.Receive(1);
            rig.DevB.Model.HostileContinuously = true;
            rig.DevB.Model.Hostile = mode;
            var e = Assert.Throws<DeviceProtocolViolationException>(() => Exchange(a, b, 8, 100, ct, queuePair: 1));
            AssertCaughtBy(mode, e);
            Assert.Contains("virtqueue 2 (rx)", e.Where);
            rig.DevB.Model.Hostile = None;
            Assert.Throws<VirtqueueFaultedException>(() => b.Receive(new PacketBuffer[4], 1));
            // Pair 0 of the same device, both ways, and pair 1's transmit queue are untouched.
            Exchange(a, b, 16, 200, ct, queuePair: 0);
            Exchange(b, a, 16, 300, ct, queuePair: 0);
            Exchange(b, a, 16, 400, ct, queuePair: 1);
            b.Reset();
            Exchange(a, b, 16, 500, ct, queuePair: 1);
            rig.CloseAndCheckPools();
        }, ct);
    }

    [Theory(Timeout = CaseTimeout)]
    [InlineData(QueueSizeOutOfRange, 1, true)]
    [InlineData(NotifyOffsetOutOfRange, 1, true)]
    [InlineData(MaxQueuePairsOutOfRange, 2, true)]
    [InlineData(MaxQueuePairsOutOfRange, 1, false)]   // one pair: MQ is not negotiated and the field not read (§5.1.4)
    public async Task ConfigValuesOutOfRangeAreRejectedAtOpen(VirtioNetHostileMode mode, int pairs, bool detected)
    {
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            using var rig = new Rig(transport, maxPairs: 2);
            rig.DevA.Model.HostileContinuously = true;
            rig.DevA.Model.Hostile = mode;
            var options = new VirtioNetOptions { QueuePairs = pairs };
            if (detected)
            {
                var e = Assert.Throws<DeviceProtocolViolationException>(() => rig.OpenA(options));
                Assert.Contains(mode switch { QueueSizeOutOfRange => "queue_size", NotifyOffsetOutOfRange => "queue_notify_off", _ => "max_virtqueue_pairs" }, e.Where);
                rig.DevA.Model.Hostile = None;
            }
            var (a, b) = rig.Open(options);
            if (!detected) { Assert.Equal(0, rig.DevA.Model.HostileActs); }
            rig.DevA.Model.Hostile = None;
            Exchange(a, b, 16, 0, ct);
            Exchange(b, a, 16, 100, ct);
            rig.CloseAndCheckPools();
        }, ct);
    }

    [Fact(Timeout = CaseTimeout)]
    public async Task ACapabilityOutsideItsBarIsRejectedAndOtherDevicesWork()
    {
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            using (var bad = new EmulatedVirtioNet(PciAddress.Parse("0000:00:09.0"), [0x52, 0x54, 0, 0, 0, 9], transport: transport, hostile: CapabilityOutsideBar))
            {
                var e = Assert.Throws<DeviceProtocolViolationException>(() => VirtioNetDevice.Open(bad));
                Assert.Contains("capability", e.Where);
                Assert.Contains("outside BAR4", e.Seen);
            }
            using var rig = new Rig(transport);
            var (a, b) = rig.Open();
            Exchange(a, b, 16, 0, ct);
            rig.CloseAndCheckPools();
        }, ct);
    }

    [Theory(Timeout = CaseTimeout)]
    [InlineData(6, 1)]    // STATUS negotiated: status (offset 6) is missing
    [InlineData(8, 2)]    // MQ negotiated: max_virtqueue_pairs (offset 8) is missing
    public async Task ADeviceConfigurationTooShortForTheNegotiatedFeaturesIsRejected(ushort length, int pairs)
    {
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            using var rig = new Rig(transport, maxPairs: 2);
            var layout = VirtioPciLayout.Parse(VirtioPciLayout.ReadConfigImage(rig.DevA.Config));
            // struct virtio_pci_cap's length field (§4.1.4), low half: the device seen through a test config view.
            ulong lengthField = (ulong)layout.Device!.Value.CapabilityOffset + 12;
            rig.DevA.OverrideConfig16(lengthField, length);
            var options = new VirtioNetOptions { QueuePairs = pairs };
            var e = Assert.Throws<DeviceProtocolViolationException>(() => rig.OpenA(options));
            Assert.Contains($"the structure is {length} bytes", e.Seen);
            rig.DevA.OverrideConfig16(lengthField, VirtioNetConfig.SizeThroughMtu);
            var (a, b) = rig.Open(options);
            Exchange(a, b, 16, 0, ct);
            rig.CloseAndCheckPools();
        }, ct);
    }

    [Fact(Timeout = CaseTimeout)]
    public async Task ADeviceThatNeverFinishesItsResetKeepsItsBuffersOutOfThePool()
    {
        // §4.1.4.3.2: only a completed reset stops the device's DMA. Until then the receive buffers it holds may
        // still be written, so closing must not hand them to another owner of the (shared) pool.
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            using var rig = new Rig(transport);
            var (a, b) = rig.Open(new VirtioNetOptions { TimeProvider = new SteppingTime() });
            Exchange(a, b, 8, 0, ct);
            var pool = b.Pool;
            int inUse = pool.InUseCount;
            Assert.True(inUse >= 56);   // B's receive ring still holds what it was not given back
            rig.DevB.Model.ResetLatencyReads = int.MaxValue;
            b.Dispose();
            Assert.Equal(inUse, pool.InUseCount);
            // The pool and the other port go on.
            Assert.True(pool.TryAllocate(out var p));
            p.Free();
            Send(a, 4, 100);
            Assert.Equal(0, a.TransmitInFlight());
        }, ct);
    }

    [Fact(Timeout = 120_000)]
    public async Task RandomMixesOfModesWithAFixedSeedNeverCrash()
    {
        // Seeded, so a failure replays: each step picks a mode, a target queue, once or continuously, and a burst;
        // whatever happens must be the named exception or correct data, and a reset always recovers.
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            var random = new Random(18);
            var modes = (VirtioNetHostileMode[])[.. Detected, RewriteDescriptors, None];
            using var rig = new Rig(transport);
            var (a, b) = rig.Open();
            ulong seq = 0;
            int steps = transport == VirtioTransport.SocketMessages ? 40 : 120, violations = 0;
            for (int step = 0; step < steps; step++)
            {
                ct.ThrowIfCancellationRequested();
                var mode = modes[random.Next(modes.Length)];
                bool rx = random.Next(2) == 0;
                var port = rx ? rig.DevB : rig.DevA;
                port.Model.HostileQueue = random.Next(4) == 0 ? null : rx ? VirtioNetQueues.Receive(0) : VirtioNetQueues.Transmit(0);
                port.Model.HostileContinuously = random.Next(2) == 0;
                port.Model.Hostile = mode;
                int count = random.Next(1, 24);
                try
                {
                    Exchange(a, b, count, seq, ct);
                    a.TransmitInFlight();
                }
                catch (DeviceProtocolViolationException e)
                {
                    violations++;
                    Assert.True(e.Device == rig.DevA.Address || e.Device == rig.DevB.Address);
                    port.Model.Hostile = None;
                    a.Reset();
                    b.Reset();
                }
                finally
                {
                    port.Model.Hostile = None;
                }
                seq += (ulong)count;
            }
            Exchange(a, b, 16, seq, ct);
            Exchange(b, a, 16, seq + 16, ct);
            Assert.True(violations > 0);
            rig.CloseAndCheckPools();
        }, ct);
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>A clock that moves 100 ms each time it is read, so a reset timeout passes at once.</summary>
    private sealed class SteppingTime : TimeProvider
    {
        private long _now;
        public override long TimestampFrequency => 1000;
        public override long GetTimestamp() => Interlocked.Add(ref _now, 100);
    }

    /// <summary>Sends <paramref name="count"/> test frames numbered from <paramref name="first"/>; the frames not taken are freed.</summary>
    private static void Send(VirtioNetDevice from, int count, ulong first, int queuePair = 0)
    {
        var frames = new PacketBuffer[count];
        Assert.Equal(count, from.Pool.Allocate(frames));
        int taken = 0;
        try
        {
            var mac = TestFrames.MacBytes(from.MacAddress);
            for (int i = 0; i < count; i++)
            {
                TestFrames.Write(frames[i].Room, 64, first + (ulong)i, Broadcast, mac);
                frames[i].Length = 64;
            }
            taken = from.Transmit(frames, queuePair);
            Assert.Equal(count, taken);
        }
        finally
        {
            // Not taken: still the caller's (also when Transmit threw before taking any).
            PacketPool.Free(frames.AsSpan(taken));
        }
    }

    /// <summary>Sends frames from <paramref name="from"/> and checks <paramref name="to"/> receives each, intact and in order.</summary>
    private static void Exchange(VirtioNetDevice from, VirtioNetDevice to, int count, ulong first, CancellationToken ct, int queuePair = 0)
    {
        Send(from, count, first, queuePair);
        var rx = new PacketBuffer[32];
        ulong expected = first;
        for (int spin = 0; expected < first + (ulong)count; spin++)
        {
            ct.ThrowIfCancellationRequested();
            Assert.True(spin < 20_000, $"received {expected - first} of {count} frames");
            int n = to.Receive(rx, queuePair);
            try
            {
                for (int i = 0; i < n; i++)
                {
                    Assert.Equal(64, rx[i].Length);
                    Assert.True(TestFrames.TryRead(rx[i].Data, out ulong seq), $"frame {expected} damaged");
                    Assert.Equal(expected, seq);
                    expected++;
                }
            }
            finally
            {
                PacketPool.Free(rx.AsSpan(0, n));
            }
            if (n == 0) { Thread.Yield(); }
        }
    }

    /// <summary>
    /// Two ports and their drivers with pools the test owns (one shared in process, one per port over sockets), so
    /// that after the drivers are closed every buffer must be back: none leaked, none freed twice.
    /// </summary>
    private sealed class Rig : IDisposable
    {
        private readonly PacketPool _poolA;
        private readonly PacketPool _poolB;
        private VirtioNetDevice? _a, _b;

        public Rig(VirtioTransport transport, int maxPairs = 1)
        {
            (DevA, DevB) = EmulatedVirtioNet.CreatePair(queueSize: QueueSize, maxPairs: maxPairs, transport: transport);
            _poolA = new PacketPool(DevA.Dma, transport == VirtioTransport.InProcess ? 1024 : 512);
            _poolB = transport == VirtioTransport.InProcess ? _poolA : new PacketPool(DevB.Dma, 512);
        }

        public EmulatedVirtioNet DevA { get; }
        public EmulatedVirtioNet DevB { get; }

        public VirtioNetDevice OpenA(VirtioNetOptions? options = null) => VirtioNetDevice.Open(DevA, (options ?? new()) with { Pool = _poolA });

        public (VirtioNetDevice A, VirtioNetDevice B) Open(VirtioNetOptions? options = null)
        {
            _a = OpenA(options);
            _b = VirtioNetDevice.Open(DevB, (options ?? new()) with { Pool = _poolB });
            return (_a, _b);
        }

        public void CloseAndCheckPools()
        {
            _a?.Dispose();
            _b?.Dispose();
            _a = _b = null;
            Assert.Equal(0, _poolA.InUseCount);
            Assert.Equal(0, _poolB.InUseCount);
        }

        public void Dispose()
        {
            _a?.Dispose();
            _b?.Dispose();
            _poolA.Dispose();
            if (_poolB != _poolA) { _poolB.Dispose(); }
            DevA.Dispose();
            DevB.Dispose();
        }
    }
}
