using Vfio.Devices;
using Vfio.Linux;

namespace Vfio.Tests.Devices;

/// <summary>The vector bookkeeping kernel VFIO and vfio-user share, against a backend that records its calls.</summary>
public sealed class EventFdInterruptSetTests
{
    private sealed class RecordingSet : EventFdInterruptSet
    {
        public RecordingSet(IrqIndex index, int count, IrqFlags flags, bool failWiring = false) : base(index, count, flags)
        {
            FailWiring = failWiring;
            Open();
        }

        public bool FailWiring { get; }
        public List<string> Calls { get; } = [];
        public EventFd[] Wired { get; private set; } = [];

        /// <summary>What the last constructor wired (kept where a failing constructor leaves no object).</summary>
        public static EventFd[] LastWired { get; private set; } = [];

        protected override void WireTriggers(EventFd[] signals)
        {
            Wired = LastWired = signals;
            if (FailWiring) { throw new VfioException("SET_IRQS refused"); }
            Calls.Add($"wire {signals.Length}");
        }

        protected override void TriggerVector(int vector) => Calls.Add($"trigger {vector}");
        protected override void UnmaskVector(int vector) => Calls.Add($"unmask {vector}");
        protected override void DisableAll() => Calls.Add("disable");
        protected override void OnDisposed() => Calls.Add("disposed");
    }

    [Fact]
    public async Task VectorsWaitOnTheirOwnEventfdsAndRouteTriggerAndUnmask()
    {
        var set = new RecordingSet(IrqIndex.Intx, 1, IrqFlags.Eventfd | IrqFlags.Maskable);
        Assert.Equal(1, set.Count);
        Assert.Equal(IrqIndex.Intx, set.Index);
        set[0].Trigger();
        set[0].Unmask();
        Assert.Equal(["trigger 0", "unmask 0"], set.Calls.Where(c => c is not "wire 1"));
        Signal(set.Wired[0]);
        Assert.Equal(1UL, await set[0].WaitAsync(TestContext.Current.CancellationToken));
        set.Dispose();
    }

    private static unsafe void Signal(EventFd signal)
    {
        ulong one = 1;
        // SAFETY: one is an 8-byte local; writing it adds 1 to the eventfd, as the kernel or a server does.
        Assert.Equal(8, (int)Interop.Libc.write(signal.Handle.Fd, &one, sizeof(ulong)));
    }

    [Fact]
    public void EdgeTriggeredVectorsAreNeverUnmaskedAndBadVectorsAreRefused()
    {
        using var set = new RecordingSet(IrqIndex.Msix, 4, IrqFlags.Eventfd | IrqFlags.NoResize);
        set[3].Unmask();
        Assert.DoesNotContain(set.Calls, c => c.StartsWith("unmask", StringComparison.Ordinal));
        Assert.Throws<ArgumentOutOfRangeException>(() => set[4]);
        Assert.Throws<ArgumentOutOfRangeException>(() => set[-1]);
    }

    [Fact]
    public void DisposeDisablesOnceClosesTheEventfdsAndRefusesFurtherUse()
    {
        var set = new RecordingSet(IrqIndex.Msi, 2, IrqFlags.Eventfd);
        var vector = set[1];
        set.Dispose();
        set.Dispose();
        Assert.Equal(["wire 2", "disable", "disposed"], set.Calls);
        Assert.All(set.Wired, s => Assert.True(s.Handle.IsClosed));
        Assert.Throws<ObjectDisposedException>(vector.Trigger);
        Assert.Throws<ObjectDisposedException>(vector.Unmask);
    }

    [Fact]
    public void FailedWiringClosesEveryEventfd()
    {
        Assert.Throws<VfioException>(() => new RecordingSet(IrqIndex.Msix, 3, IrqFlags.Eventfd, failWiring: true));
        var wired = RecordingSet.LastWired;
        Assert.Equal(3, wired.Length);
        Assert.All(wired, s => Assert.True(s.Handle.IsClosed));
    }
}
