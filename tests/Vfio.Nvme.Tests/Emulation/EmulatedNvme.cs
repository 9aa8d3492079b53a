using Vfio.Devices;
using Vfio.Emulation.Nvme;
using Vfio.Spec.Nvme;
using Vfio.Testing;
using Vfio.User.Client;

namespace Vfio.Nvme.Tests.Emulation;

/// <summary>How the driver reaches the emulated controller.</summary>
public enum NvmeTransport
{
    /// <summary>Direct calls into the model (<see cref="InProcessPciDevice"/>).</summary>
    InProcess,

    /// <summary>vfio-user over a UNIX socket; DMA memory shared by memfd with DMA_MAP.</summary>
    Socket,

    /// <summary>vfio-user over a UNIX socket; DMA memory mapped without an fd, reached with DMA_READ/DMA_WRITE messages.</summary>
    SocketMessages,
}

/// <summary>
/// The one NVMe model (<see cref="NvmeDevice"/>, shipped in Vfio.Emulation) behind <see cref="IPciDevice"/>, reached
/// in process or over a real vfio-user socket. Any rule the driver breaks (the model's protocol violations) fails
/// the test when the device is disposed, so the strictness of a test-only emulator is kept.
/// </summary>
internal sealed class EmulatedNvme : HostedDevice
{
    private static readonly PciAddress Bdf = new(0, 0, 6, 0);
    private readonly List<string> _violations = [];

    public EmulatedNvme(NvmeTransport transport = NvmeTransport.InProcess, NvmeDeviceOptions? options = null)
        : this(new NvmeDevice(options), new EventLog(), transport)
    {
    }

    private EmulatedNvme(NvmeDevice model, EventLog log, NvmeTransport transport)
        : this(model, log, transport == NvmeTransport.InProcess ? new FakeDmaAllocator(log) : null, transport)
    {
    }

    private EmulatedNvme(NvmeDevice model, EventLog log, FakeDmaAllocator? fake, NvmeTransport transport)
        : base(model, Bdf, Hosting(transport, fake), region => new BusMasterLog(region, log))
    {
        Model = model;
        Log = log;
        Allocator = fake;
        Transport = transport;
        Model.ProtocolViolation += v => { lock (_violations) { _violations.Add(v); } Log.Add("violation: " + v); };
        Model.StateChanged += Log.Add;
    }

    private static DeviceHosting Hosting(NvmeTransport transport, FakeDmaAllocator? fake) => transport == NvmeTransport.InProcess
        ? DeviceHosting.InProcess(fake!, (address, _) => fake!.Translate(address))
        : DeviceHosting.OverSocket(new VfioUserClientOptions { ShareDmaMemory = transport == NvmeTransport.Socket });

    public NvmeTransport Transport { get; }
    public NvmeDevice Model { get; }
    public EventLog Log { get; }

    /// <summary>The fake DMA allocator (in process only: over a socket, memory comes from the vfio-user client).</summary>
    public FakeDmaAllocator? Allocator { get; }

    public Span<byte> Disk => Model.Disk;
    public bool Deferred { get => Model.ProcessOnWorkerThread; set => Model.ProcessOnWorkerThread = value; }
    public bool Stalled { get => Model.Stalled; set => Model.Stalled = value; }
    public NvmeStatus? FailNextIo { get => Model.FailNextIo; set => Model.FailNextIo = value; }
    public int MaxPrpListEntries => Model.MaxPrpListEntries;
    public int QueuesAlive => Model.QueuesAlive;
    public bool Enabled => Model.Enabled;
    public int SubmissionDoorbells(int queueId) => Model.SubmissionDoorbells(queueId);
    public void SetFatal() => Model.SetFatal();

    /// <summary>Rules the driver broke so far; disposing fails the test unless <see cref="ExpectViolations"/> was called.</summary>
    public IReadOnlyList<string> Violations { get { lock (_violations) { return [.. _violations]; } } }

    public bool ViolationsExpected { get; private set; }

    public void ExpectViolations() => ViolationsExpected = true;

    /// <summary>Cancelled by <see cref="RequestRelease"/>, as the kernel's request interrupt would be.</summary>
    public override CancellationToken ReleaseRequested => _releaseRequest.Token;

    /// <summary>Asks for the device back, like a hot-unplug.</summary>
    public void RequestRelease() => _releaseRequest.Cancel();

    /// <summary>True once the device was disposed (closed, in VFIO terms).</summary>
    public bool Closed { get; private set; }

    private readonly CancellationTokenSource _releaseRequest = new();

    protected override void OnDisposed()
    {
        if (!Closed) { Log.Add("device closed"); }
        Closed = true;
        Model.Dispose();
        if (!ViolationsExpected) { Assert.Empty(Violations); }
    }

    /// <summary>Logs bus mastering going on and off, on either transport.</summary>
    private sealed class BusMasterLog(IDeviceRegion inner, EventLog log) : ConfigRegionDecorator(inner)
    {
        public override void Write16(ulong o, ushort v)
        {
            if (o == 4)
            {
                bool before = (Inner.Read16(4) & 4) != 0, after = (v & 4) != 0;
                if (before != after) { log.Add(after ? "bus master on" : "bus master off"); }
            }
            Inner.Write16(o, v);
        }
    }
}
