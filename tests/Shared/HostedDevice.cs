using Vfio.Devices;
using Vfio.Dma;
using Vfio.User.Client;
using Vfio.User.Server;

namespace Vfio.Testing;

/// <summary>
/// An emulated device (a model on the vfio-user server library) seen by a driver as an <see cref="IPciDevice"/>,
/// either in process (<see cref="InProcessPciDevice"/>) or through a real vfio-user socket (a
/// <see cref="VfioUserServer"/> in a temp folder and a <see cref="VfioUserDevice"/> connected to it). Test wrappers
/// derive from it and add their model's knobs; config space may be seen through a test decorator.
/// </summary>
internal abstract class HostedDevice : IPciDevice
{
    private readonly IPciDevice _inner;
    private readonly VfioUserServer? _server;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task? _serving;
    private readonly string? _directory;
    private readonly IDeviceRegion? _configRegion;

    /// <summary>Hosts <paramref name="device"/> as <paramref name="hosting"/> says; <paramref name="configView"/> may decorate its config space.</summary>
    protected HostedDevice(EmulatedPciDevice device, PciAddress address, DeviceHosting hosting, Func<IDeviceRegion, IDeviceRegion>? configView = null)
    {
        Address = address;
        if (hosting.Socket is { } options)
        {
            _directory = Path.Combine(Path.GetTempPath(), "vfu-" + Guid.NewGuid().ToString("N")[..12]);
            Directory.CreateDirectory(_directory);
            string socket = Path.Combine(_directory, "device.sock");
            _server = new VfioUserServer(device);
            _server.Listen(socket);
            _serving = Task.Run(() => _server.RunAsync(_stop.Token));
            _inner = VfioUserDevice.Connect(socket, options with { Address = address });
        }
        else
        {
            _inner = new InProcessPciDevice(device, address, hosting.Dma!, hosting.Translate!);
        }
        (Config, _configRegion) = View(configView);
    }

    private (PciConfigSpace, IDeviceRegion?) View(Func<IDeviceRegion, IDeviceRegion>? configView)
    {
        if (configView is null) { return (_inner.Config, null); }
        var region = configView(_inner.OpenRegion(PciRegion.Config));
        return (new PciConfigSpace(region), region);
    }

    /// <summary>True when the driver reaches the device through a vfio-user socket.</summary>
    public bool OverSocket => _server is not null;

    public PciAddress Address { get; }
    public DeviceBackend Backend => _inner.Backend;
    public bool IsDmaIsolated => _inner.IsDmaIsolated;
    public DeviceInfo Info => _inner.Info;
    public PciConfigSpace Config { get; }
    public IDmaAllocator Dma => _inner.Dma;
    /// <summary>The host's request for the device back; a test emulator overrides it to simulate a hot-unplug.</summary>
    public virtual CancellationToken ReleaseRequested => CancellationToken.None;
    /// <summary>Unavailable, as on vfio-user, until a test raises an error with <see cref="RaiseError"/>.</summary>
    public ErrorReportingSupport ErrorReporting { get; private set; } = ErrorReportingSupport.Unavailable("emulated device");
    public event EventHandler<PciErrorReport>? ErrorReported;

    /// <summary>
    /// The test hook for the error interrupt: raises <see cref="ErrorReported"/> as the kernel's error interrupt would,
    /// on the calling thread (the kernel's comes on the poller's thread), with no AER registers unless given.
    /// </summary>
    public void RaiseError(PciErrorSeverity severity, AerStatus? aer = null)
    {
        ErrorReporting = new ErrorReportingSupport(true, "raised by the test");
        ErrorReported?.Invoke(this, new PciErrorReport(Address, severity, aer));
    }

    public RegionInfo GetRegionInfo(int index) => _inner.GetRegionInfo(index);
    public IDeviceRegion OpenRegion(int index) => _inner.OpenRegion(index);
    public IrqInfo GetIrqInfo(IrqIndex index) => _inner.GetIrqInfo(index);
    public IInterruptSet EnableInterrupts(IrqIndex index, int count) => _inner.EnableInterrupts(index, count);
    public void Reset() => _inner.Reset();

    /// <summary>
    /// In process the device stays usable (it may be opened again, like a VFIO device whose fd was closed); over a
    /// socket the connection and the server close. Then <see cref="OnDisposed"/> runs.
    /// </summary>
    public void Dispose()
    {
        if (_server is not null)
        {
            _configRegion?.Dispose();
            _inner.Dispose();
            _stop.Cancel();
            _server.Dispose();
            _serving!.Wait(TimeSpan.FromSeconds(5));
            try { Directory.Delete(_directory!, recursive: true); } catch (IOException) { }
        }
        OnDisposed();
    }

    /// <summary>Checks made when the test is done with the device.</summary>
    protected virtual void OnDisposed() { }
}

/// <summary>How a <see cref="HostedDevice"/> is reached: in process with a test allocator, or through a vfio-user socket.</summary>
internal sealed record DeviceHosting(IDmaAllocator? Dma, DmaTranslator? Translate, VfioUserClientOptions? Socket)
{
    /// <summary>In process: the device's DMA goes to <paramref name="dma"/>'s memory through <paramref name="translate"/>.</summary>
    public static DeviceHosting InProcess(IDmaAllocator dma, DmaTranslator translate) => new(dma, translate, null);

    /// <summary>Over a fresh UNIX socket, the client connecting with <paramref name="options"/>.</summary>
    public static DeviceHosting OverSocket(VfioUserClientOptions options) => new(null, null, options);
}

/// <summary>Config space passed through to another region; test decorators override what they watch or change.</summary>
internal class ConfigRegionDecorator(IDeviceRegion inner) : IDeviceRegion
{
    protected IDeviceRegion Inner => inner;
    public RegionInfo Info => inner.Info;
    public ulong Size => inner.Size;
    public bool IsMapped(ulong offset) => inner.IsMapped(offset);
    public virtual byte Read8(ulong o) => inner.Read8(o);
    public virtual ushort Read16(ulong o) => inner.Read16(o);
    public virtual uint Read32(ulong o) => inner.Read32(o);
    public virtual ulong Read64(ulong o) => inner.Read64(o);
    public virtual void Write8(ulong o, byte v) => inner.Write8(o, v);
    public virtual void Write16(ulong o, ushort v) => inner.Write16(o, v);
    public virtual void Write32(ulong o, uint v) => inner.Write32(o, v);
    public virtual void Write64(ulong o, ulong v) => inner.Write64(o, v);
    public virtual void Read(ulong o, Span<byte> d) => inner.Read(o, d);
    public virtual void Write(ulong o, ReadOnlySpan<byte> s) => inner.Write(o, s);
    public void Dispose() => inner.Dispose();
}
