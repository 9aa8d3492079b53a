using System.Buffers.Binary;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Emulation.VirtioNet;
using Vfio.Spec.Virtio;
using Vfio.Testing;
using Vfio.User.Client;

namespace Vfio.VirtioNet.Tests.Emulation;

/// <summary>How the driver reaches an emulated port.</summary>
public enum VirtioTransport
{
    /// <summary>Direct calls into the model; both ports of a pair share one <see cref="Emulation.EmulatedDma"/>, as two ports in one VFIO container.</summary>
    InProcess,

    /// <summary>Each port served on its own vfio-user socket; each client has its own DMA space (memfds shared with DMA_MAP).</summary>
    Socket,

    /// <summary>As <see cref="Socket"/>, but DMA memory is mapped without an fd: every ring and buffer access is a DMA_READ/DMA_WRITE message.</summary>
    SocketMessages,
}

/// <summary>
/// The one virtio-net model (<see cref="VirtioNetPort"/>, shipped in Vfio.Emulation) behind <see cref="IPciDevice"/>,
/// reached in process or over a real vfio-user socket. A rule the driver breaks (the model's protocol violations)
/// throws into the driver's register access, so the strictness of a test-only emulator is kept.
/// </summary>
internal sealed class EmulatedVirtioNet : HostedDevice
{
    private readonly List<string> _violations = [];
    private readonly Dictionary<ulong, ushort> _configOverrides;

    public EmulatedVirtioNet(PciAddress address, byte[] mac, EmulatedDma? dma = null, ulong? features = null, ushort queueSize = 256, int maxPairs = 1,
        VirtioTransport transport = VirtioTransport.InProcess, int msixVectors = 0, VirtioNetHostileMode hostile = VirtioNetHostileMode.None)
        : this(new VirtioNetPort(mac, features, queueSize, maxPairs, msixVectors, hostile), address, transport,
            transport == VirtioTransport.InProcess ? dma ?? new EmulatedDma() : null, [])
    {
    }

    private EmulatedVirtioNet(VirtioNetPort model, PciAddress address, VirtioTransport transport, EmulatedDma? dma, Dictionary<ulong, ushort> overrides)
        : base(model, address,
            dma is null
                ? DeviceHosting.OverSocket(new VfioUserClientOptions { ShareDmaMemory = transport == VirtioTransport.Socket })
                : DeviceHosting.InProcess(dma, dma.TryTranslate),
            region => new OverridingConfigRegion(region, overrides))
    {
        Model = model;
        EmulatedDma = dma;
        _configOverrides = overrides;
        Model.ProtocolViolation += v =>
        {
            lock (_violations) { _violations.Add(v); }
            if (!ViolationsExpected) { throw new InvalidOperationException("emulated virtio-net: " + v); }
        };
    }

    /// <summary>Two ports on one hub (in process: sharing one DMA address space, as two ports in one VFIO container).</summary>
    public static (EmulatedVirtioNet A, EmulatedVirtioNet B) CreatePair(ushort queueSize = 256, ulong? features = null, int maxPairs = 1,
        VirtioTransport transport = VirtioTransport.InProcess, int msixVectors = 0)
    {
        var dma = transport == VirtioTransport.InProcess ? new EmulatedDma() : null;
        var a = new EmulatedVirtioNet(PciAddress.Parse("0000:00:07.0"), [0x52, 0x54, 0, 0, 0, 1], dma, features, queueSize, maxPairs, transport, msixVectors);
        var b = new EmulatedVirtioNet(PciAddress.Parse("0000:00:08.0"), [0x52, 0x54, 0, 0, 0, 2], dma, features, queueSize, maxPairs, transport, msixVectors);
        VirtioNetPort.Connect(a.Model, b.Model);
        return (a, b);
    }

    /// <summary>Makes the 16-bit config register at <paramref name="offset"/> read <paramref name="value"/> (to show the driver another identity).</summary>
    public void OverrideConfig16(ulong offset, ushort value) => _configOverrides[offset] = value;

    /// <summary>Writes a virtio vendor capability (§4.1.4) into a config image, for layout tests.</summary>
    public static void WriteCap(Span<byte> c, int at, int next, VirtioPciCapType type, ulong offset, uint length, byte capLen, byte bar = VirtioNetPort.Bar)
    {
        c[at] = PciCapabilityId.VendorSpecific;
        c[at + 1] = (byte)next;
        c[at + 2] = capLen;
        c[at + 3] = (byte)type;
        c[at + 4] = bar;
        BinaryPrimitives.WriteUInt32LittleEndian(c[(at + 8)..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(c[(at + 12)..], length);
    }

    public VirtioNetPort Model { get; }

    /// <summary>The test allocator (in process only: over a socket, memory comes from the vfio-user client).</summary>
    public EmulatedDma? EmulatedDma { get; }

    public IReadOnlyList<string> Violations { get { lock (_violations) { return [.. _violations]; } } }
    public bool ViolationsExpected { get; set; }

    public byte[] Mac => Model.Mac;
    public ulong OfferedFeatures { get => Model.OfferedFeatures; set => Model.OfferedFeatures = value; }
    public ulong DriverFeatures => Model.DriverFeatures;
    public VirtioStatus DeviceStatus => Model.DeviceStatus;
    public bool SuppressNotifications { get => Model.SuppressNotifications; set => Model.SuppressNotifications = value; }
    public bool RefuseFeatures { get => Model.RefuseFeatures; set => Model.RefuseFeatures = value; }
    public int ResetLatencyReads { get => Model.ResetLatencyReads; set => Model.ResetLatencyReads = value; }
    public bool LinkUp { get => Model.LinkUp; set => Model.LinkUp = value; }
    public int MaxPairs => Model.MaxPairs;
    public int ActivePairs => Model.ActivePairs;
    public long Kicks => Model.Kicks;
    public long FramesSent => Model.FramesSent;
    public long FramesDropped => Model.FramesDropped;
    public int Resets => Model.Resets;
    public long InterruptsRaised => Model.InterruptsRaised;
    public int FunctionResets => Model.FunctionResets;
    public void Pump() => Model.Pump();

    /// <summary>Config space as the device has it, but for the 16-bit registers a test overrode.</summary>
    private sealed class OverridingConfigRegion(IDeviceRegion inner, Dictionary<ulong, ushort> overrides) : ConfigRegionDecorator(inner)
    {
        public override ushort Read16(ulong o) => overrides.TryGetValue(o, out var v) ? v : Inner.Read16(o);
        public override uint Read32(ulong o) => (uint)(Read16(o) | Read16(o + 2) << 16);
        public override ulong Read64(ulong o) => Read32(o) | (ulong)Read32(o + 4) << 32;
        public override void Read(ulong o, Span<byte> d)
        {
            Inner.Read(o, d);
            foreach (var (at, v) in overrides)
            {
                if (at >= o && at + 2 <= o + (ulong)d.Length) { BinaryPrimitives.WriteUInt16LittleEndian(d[(int)(at - o)..], v); }
            }
        }
    }
}
