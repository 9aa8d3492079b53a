using Vfio.Devices;
using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Protocol;
using Vfio.User.Client;
using Vfio.User.Server;

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
internal sealed class EmulatedNvme : IPciDevice
{
    private readonly IPciDevice _inner;
    private readonly VfioUserServer? _server;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task? _serving;
    private readonly string? _directory;
    private readonly List<string> _violations = [];
    private readonly IDeviceRegion _configRegion;

    public EmulatedNvme(NvmeTransport transport = NvmeTransport.InProcess, NvmeDeviceOptions? options = null)
    {
        Transport = transport;
        Log = new EventLog();
        Model = new NvmeDevice(options);
        Model.ProtocolViolation += v => { lock (_violations) { _violations.Add(v); } Log.Add("violation: " + v); };
        Model.StateChanged += Log.Add;
        if (transport == NvmeTransport.InProcess)
        {
            var local = new InProcessPciDevice(Model, Address, Log);
            Allocator = local.Allocator;
            _inner = local;
        }
        else
        {
            _directory = Path.Combine(Path.GetTempPath(), "vfu-nvme-" + Guid.NewGuid().ToString("N")[..12]);
            Directory.CreateDirectory(_directory);
            string socket = Path.Combine(_directory, "nvme.sock");
            _server = new VfioUserServer(Model);
            _server.Listen(socket);
            _serving = Task.Run(() => _server.RunAsync(_stop.Token));
            _inner = VfioUserDevice.Connect(socket, new VfioUserClientOptions
            {
                Address = Address,
                ShareDmaMemory = transport == NvmeTransport.Socket,
            });
        }
        // Config space through a decorator on either transport, so the log shows bus mastering going on and off.
        _configRegion = new LoggingConfigRegion(_inner.OpenRegion(PciRegion.Config), Log);
        Config = new PciConfigSpace(_configRegion);
    }

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

    // ------------------------------------------------------------------ IPciDevice

    public PciAddress Address { get; } = new(0, 0, 6, 0);
    public DeviceBackend Backend => _inner.Backend;
    public bool IsDmaIsolated => _inner.IsDmaIsolated;
    public DeviceInfo Info => _inner.Info;
    public PciConfigSpace Config { get; }
    public IDmaAllocator Dma => _inner.Dma;
    public RegionInfo GetRegionInfo(int index) => _inner.GetRegionInfo(index);
    public IDeviceRegion OpenRegion(int index) => _inner.OpenRegion(index);
    public IrqInfo GetIrqInfo(IrqIndex index) => _inner.GetIrqInfo(index);
    public IInterruptSet EnableInterrupts(IrqIndex index, int count) => _inner.EnableInterrupts(index, count);
    public void Reset() => _inner.Reset();

    public void Dispose()
    {
        _configRegion.Dispose();
        _inner.Dispose();
        if (_server is not null)
        {
            _stop.Cancel();
            _server.Dispose();
            _serving!.Wait(TimeSpan.FromSeconds(5));
            try { Directory.Delete(_directory!, recursive: true); } catch (IOException) { }
        }
        Model.Dispose();
        if (!ViolationsExpected) { Assert.Empty(Violations); }
    }

    private sealed class LoggingConfigRegion(IDeviceRegion inner, EventLog log) : IDeviceRegion
    {
        public RegionInfo Info => inner.Info;
        public ulong Size => inner.Size;
        public bool IsMapped(ulong offset) => inner.IsMapped(offset);
        public byte Read8(ulong o) => inner.Read8(o);
        public ushort Read16(ulong o) => inner.Read16(o);
        public uint Read32(ulong o) => inner.Read32(o);
        public ulong Read64(ulong o) => inner.Read64(o);
        public void Write8(ulong o, byte v) => inner.Write8(o, v);
        public void Write16(ulong o, ushort v)
        {
            if (o == 4)
            {
                bool before = (inner.Read16(4) & 4) != 0, after = (v & 4) != 0;
                if (before != after) { log.Add(after ? "bus master on" : "bus master off"); }
            }
            inner.Write16(o, v);
        }
        public void Write32(ulong o, uint v) => inner.Write32(o, v);
        public void Write64(ulong o, ulong v) => inner.Write64(o, v);
        public void Read(ulong o, Span<byte> d) => inner.Read(o, d);
        public void Write(ulong o, ReadOnlySpan<byte> s) => inner.Write(o, s);
        public void Dispose() => inner.Dispose();
    }
}
