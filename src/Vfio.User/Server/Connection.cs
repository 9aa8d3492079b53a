using System.Buffers.Binary;
using System.Net.Sockets;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Linux;
using Vfio.User.Protocol;
using Vfio.User.Transport;

namespace Vfio.User.Server;

public sealed partial class VfioUserServer
{
    /// <summary>Regions of a vfio-pci device (VFIO_PCI_NUM_REGIONS) and IRQ indexes (VFIO_PCI_NUM_IRQS).</summary>
    internal const int RegionCount = 9, IrqIndexCount = 5;

    /// <summary>One client: its DMA mappings, its eventfds, and the peer that carries its messages.</summary>
    private sealed class Connection : IDeviceContext, IDisposable
    {
        private readonly VfioUserServer _server;
        private readonly MessagePeer _peer;
        private readonly Lock _dmaLock = new();
        private readonly List<DmaMapping> _mappings = [];
        private readonly Lock _irqLock = new();
        private readonly SafeFdHandle?[][] _eventfds = new SafeFdHandle?[IrqIndexCount][];
        private bool _intxMasked;
        private VersionCapabilities? _client;
        private int _disposed;

        public Connection(VfioUserServer server, Socket socket)
        {
            _server = server;
            var o = server._options;
            int maxMessage = MessageHeader.Length + RegionAccess.Length + o.MaxDataTransferSize;
            _peer = new MessagePeer(new MessageSocket(socket, maxMessage, o.MaxMessageFds), Handle, "vfio-user-server");
            for (int i = 0; i < IrqIndexCount; i++) { _eventfds[i] = new SafeFdHandle?[server._device.GetIrqCount((IrqIndex)i)]; }
        }

        public Task Closed => _peer.Closed;

        private EmulatedPciDevice Device => _server._device;

        public void Start()
        {
            Device.Context = this;
            _peer.Start();
        }

        public Task WaitAsync(CancellationToken ct) => _peer.Closed.WaitAsync(ct);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) { return; }
            _peer.Dispose();
            LogDisconnected(_server._logger, _peer.CloseReason?.Message ?? "closed");
            if (Device.Context == this) { Device.Context = EmulatedPciDevice.Disconnected.Instance; }
            lock (_irqLock)
            {
                foreach (var set in _eventfds) { for (int i = 0; i < set.Length; i++) { set[i]?.Dispose(); set[i] = null; } }
            }
            lock (_dmaLock)
            {
                foreach (var m in _mappings) { m.Dispose(); }
                _mappings.Clear();
            }
            try { Device.Reset(); } catch (Exception) { /* a device's reset failing must not take the server down */ }
        }

        // ---- command dispatch ----

        private CommandResult Handle(ReceivedMessage m)
        {
            var cmd = m.Header.Command;
            if (cmd != Command.Version && _client is null)
            {
                throw VfioUserCommandException.Invalid(cmd, "the first command of a connection must be VERSION");
            }
            if (m.Fds.Count > 0 && cmd is not (Command.DmaMap or Command.DeviceSetIrqs))
            {
                throw VfioUserCommandException.Invalid(cmd, $"{m.Fds.Count} descriptors sent with a command that takes none");
            }
            try
            {
                return cmd switch
                {
                    Command.Version => Version(m.Body),
                    Command.DmaMap => DmaMap(m),
                    Command.DmaUnmap => DmaUnmap(m.Body),
                    Command.DeviceGetInfo => GetInfo(m.Body),
                    Command.DeviceGetRegionInfo => GetRegionInfo(m.Body),
                    Command.DeviceGetRegionIoFds => GetRegionIoFds(m.Body),
                    Command.DeviceGetIrqInfo => GetIrqInfo(m.Body),
                    Command.DeviceSetIrqs => SetIrqs(m),
                    Command.RegionRead => RegionRead(m.Body),
                    Command.RegionWrite => RegionWrite(m.Body),
                    Command.DeviceReset => DeviceReset(),
                    _ => throw new VfioUserCommandException(cmd, Errno.EOPNOTSUPP, "unknown or client-only command"),
                };
            }
            catch (VfioUserCommandException e)
            {
                LogRefused(_server._logger, cmd, e.Message);
                throw;
            }
            catch (Exception e) when (e is not VfioUserProtocolException)
            {
                // A failure inside the device model (or a descriptor the kernel refused) is the client's I/O error,
                // never the server's crash.
                LogRefused(_server._logger, cmd, e.Message);
                throw new VfioUserCommandException(cmd, e is VfioException { ErrorNumber: > 0 } v ? v.ErrorNumber : Errno.EIO, e.Message);
            }
        }

        private CommandResult Version(byte[] body)
        {
            if (_client is not null) { throw VfioUserCommandException.Invalid(Command.Version, "version was already negotiated"); }
            var v = VersionMessage.Read(body);
            if (v.Major != VersionMessage.CurrentMajor)
            {
                throw new VfioUserCommandException(Command.Version, Errno.EOPNOTSUPP, $"protocol {v.Major}.{v.Minor} is not 0.x");
            }
            _client = v.Capabilities;
            var o = _server._options;
            LogNegotiated(_server._logger, v.Major, v.Minor, _client.MaxMessageFds, _client.MaxDataTransferSize);
            var mine = new VersionMessage(VersionMessage.CurrentMajor, Math.Min(v.Minor, VersionMessage.CurrentMinor), new VersionCapabilities
            {
                MaxMessageFds = o.MaxMessageFds,
                MaxDataTransferSize = o.MaxDataTransferSize,
                MaxDmaMaps = o.MaxDmaMaps,
                PageSizes = (ulong)Environment.SystemPageSize,
            });
            return new CommandResult(mine.Encode());
        }

        private CommandResult GetInfo(byte[] body)
        {
            Wire.Need(body, 4, Command.DeviceGetInfo);
            var reply = new byte[DeviceInfoReply.Length];
            new DeviceInfoReply(DeviceFlags.Pci | DeviceFlags.Reset, RegionCount, IrqIndexCount).Write(reply);
            return new CommandResult(reply);
        }

        private CommandResult GetRegionInfo(byte[] body)
        {
            var req = RegionInfoMessage.Read(body);
            if (req.ArgSize < RegionInfoMessage.Length) { throw VfioUserCommandException.Invalid(Command.DeviceGetRegionInfo, $"argsz {req.ArgSize} is below 32"); }
            var (flags, size, memory) = DescribeRegion(req.Index);
            var areas = req.Index < 6 ? Device.GetBar((int)req.Index)?.MappableAreas : null;
            // struct vfio_region_info, then (for a partly mappable BAR) one VFIO_REGION_INFO_CAP_SPARSE_MMAP
            // capability: header id u16, version u16, next u32; nr_areas u32, reserved u32; areas of offset u64, size u64.
            int capLength = areas is null ? 0 : 8 + 8 + 16 * areas.Count;
            int needed = RegionInfoMessage.Length + capLength;
            byte[] reply;
            if (capLength == 0)
            {
                reply = new byte[RegionInfoMessage.Length];
                new RegionInfoMessage(RegionInfoMessage.Length, flags, req.Index, 0, size, 0).Write(reply);
            }
            else if (req.ArgSize < needed)
            {
                // As the kernel does: say how much room the capabilities need, and leave them out.
                reply = new byte[RegionInfoMessage.Length];
                new RegionInfoMessage((uint)needed, flags | RegionFlags.Caps, req.Index, 0, size, 0).Write(reply);
            }
            else
            {
                reply = new byte[needed];
                new RegionInfoMessage((uint)needed, flags | RegionFlags.Caps, req.Index, RegionInfoMessage.Length, size, 0).Write(reply);
                var cap = reply.AsSpan(RegionInfoMessage.Length);
                BinaryPrimitives.WriteUInt16LittleEndian(cap, 1);        // VFIO_REGION_INFO_CAP_SPARSE_MMAP
                BinaryPrimitives.WriteUInt16LittleEndian(cap[2..], 1);   // version 1
                BinaryPrimitives.WriteUInt32LittleEndian(cap[8..], (uint)areas!.Count);
                for (int i = 0; i < areas.Count; i++)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(cap[(16 + 16 * i)..], areas[i].Offset);
                    BinaryPrimitives.WriteUInt64LittleEndian(cap[(24 + 16 * i)..], areas[i].Size);
                }
            }
            if (memory is null) { return new CommandResult(reply); }
            // The descriptor is sent with the reply; a duplicate, so closing it after sending leaves the BAR's own open.
            return new CommandResult(reply, [memory.Handle.Duplicate("dup of a BAR memfd")]);
        }

        private CommandResult GetRegionIoFds(byte[] body)
        {
            Wire.Need(body, 16, Command.DeviceGetRegionIoFds);
            uint index = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(8));
            DescribeRegion(index);
            // No ioeventfds are offered: argsz, flags, index, count 0.
            var reply = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(reply, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), index);
            return new CommandResult(reply);
        }

        private (RegionFlags Flags, ulong Size, SharedMemory? Memory) DescribeRegion(uint index)
        {
            if (index >= RegionCount) { throw VfioUserCommandException.Invalid(Command.DeviceGetRegionInfo, $"region {index} does not exist (0-{RegionCount - 1})"); }
            if (index == PciRegion.Config) { return (RegionFlags.Read | RegionFlags.Write, (ulong)Device.Config.Size, null); }
            var bar = index < 6 ? Device.GetBar((int)index) : null;
            if (bar is null) { return (RegionFlags.None, 0, null); }
            var flags = RegionFlags.Read | RegionFlags.Write | (bar.Memory is null ? RegionFlags.None : RegionFlags.Mmap);
            return (flags, bar.Size, bar.Memory);
        }

        private CommandResult GetIrqInfo(byte[] body)
        {
            var req = IrqInfoMessage.Read(body);
            if (req.Index >= IrqIndexCount) { throw VfioUserCommandException.Invalid(Command.DeviceGetIrqInfo, $"IRQ index {req.Index} does not exist (0-{IrqIndexCount - 1})"); }
            var index = (IrqIndex)req.Index;
            var flags = index switch
            {
                IrqIndex.Intx => IrqFlags.Eventfd | IrqFlags.Maskable | IrqFlags.AutoMasked,
                IrqIndex.Msi or IrqIndex.Msix => IrqFlags.Eventfd | IrqFlags.NoResize,
                _ => IrqFlags.Eventfd,
            };
            var reply = new byte[IrqInfoMessage.Length];
            new IrqInfoMessage(flags, req.Index, (uint)Device.GetIrqCount(index)).Write(reply);
            return new CommandResult(reply);
        }

        private CommandResult SetIrqs(ReceivedMessage m)
        {
            const Command C = Command.DeviceSetIrqs;
            var req = SetIrqsRequest.Read(m.Body);
            if (req.Index >= IrqIndexCount) { throw VfioUserCommandException.Invalid(C, $"IRQ index {req.Index} does not exist"); }
            uint data = req.Flags & (SetIrqsRequest.DataNone | SetIrqsRequest.DataBool | SetIrqsRequest.DataEventFd);
            uint action = req.Flags & (SetIrqsRequest.ActionMask | SetIrqsRequest.ActionUnmask | SetIrqsRequest.ActionTrigger);
            if (!IsSingleBit(data) || !IsSingleBit(action) || (req.Flags & ~(data | action)) != 0)
            {
                throw VfioUserCommandException.Invalid(C, $"flags 0x{req.Flags:x} must name exactly one DATA and one ACTION");
            }
            var index = (IrqIndex)req.Index;
            int vectors = Device.GetIrqCount(index);
            if ((ulong)req.Start + req.Count > (ulong)vectors)
            {
                throw VfioUserCommandException.Invalid(C, $"vectors {req.Start}+{req.Count} exceed the {vectors} of {index}");
            }
            if (data != SetIrqsRequest.DataEventFd && m.Fds.Count != 0) { throw VfioUserCommandException.Invalid(C, "descriptors sent without DATA_EVENTFD"); }
            bool[] selected = new bool[req.Count];
            if (data == SetIrqsRequest.DataBool)
            {
                if (m.Body.Length != SetIrqsRequest.Length + req.Count) { throw VfioUserCommandException.Invalid(C, "DATA_BOOL needs one byte per vector"); }
                for (int i = 0; i < req.Count; i++) { selected[i] = m.Body[SetIrqsRequest.Length + i] != 0; }
            }
            else
            {
                Array.Fill(selected, true);
            }

            if (action == SetIrqsRequest.ActionMask || action == SetIrqsRequest.ActionUnmask)
            {
                if (index != IrqIndex.Intx || data == SetIrqsRequest.DataEventFd)
                {
                    throw VfioUserCommandException.Invalid(C, $"only INTx can be masked or unmasked, and not through eventfds");
                }
                if (req.Count > 0 && selected[0]) { lock (_irqLock) { _intxMasked = action == SetIrqsRequest.ActionMask; } }
                return CommandResult.Empty;
            }

            // ACTION_TRIGGER
            if (data == SetIrqsRequest.DataEventFd)
            {
                if (m.Fds.Count != req.Count) { throw VfioUserCommandException.Invalid(C, $"{m.Fds.Count} descriptors for {req.Count} vectors"); }
                foreach (var fd in m.Fds)
                {
                    // Signalling writes 8 bytes to each descriptor from the device's threads: anything but an eventfd
                    // (a full pipe, a socket) could block them, so nothing else is accepted.
                    if (!EventFd.IsEventFd(fd)) { throw VfioUserCommandException.Invalid(C, "a descriptor passed for an interrupt is not an eventfd"); }
                }
                lock (_irqLock)
                {
                    var set = _eventfds[req.Index];
                    if (req.Count == 0) { Clear(set); }
                    for (int i = 0; i < req.Count; i++)
                    {
                        set[req.Start + i]?.Dispose();
                        set[req.Start + i] = m.TakeFd(i);
                    }
                    if (index == IrqIndex.Intx) { _intxMasked = false; }
                }
                return CommandResult.Empty;
            }
            if (data == SetIrqsRequest.DataNone && req.Count == 0)
            {
                lock (_irqLock) { Clear(_eventfds[req.Index]); }
                return CommandResult.Empty;
            }
            for (int i = 0; i < req.Count; i++)
            {
                if (selected[i]) { SignalInterrupt(index, (int)req.Start + i); }
            }
            return CommandResult.Empty;

            static bool IsSingleBit(uint v) => v != 0 && (v & (v - 1)) == 0;
            static void Clear(SafeFdHandle?[] set) { for (int i = 0; i < set.Length; i++) { set[i]?.Dispose(); set[i] = null; } }
        }

        private CommandResult RegionRead(byte[] body)
        {
            const Command C = Command.RegionRead;
            var req = RegionAccess.Read(body, C);
            if (body.Length != RegionAccess.Length) { throw VfioUserCommandException.Invalid(C, "a read request carries no data"); }
            CheckAccess(req, C);
            var reply = new byte[RegionAccess.Length + req.Count];
            req.Write(reply);
            var data = reply.AsSpan(RegionAccess.Length);
            if (req.Region == PciRegion.Config) { Device.Config.Read((int)req.Offset, data); }
            else
            {
                var bar = Device.GetBar((int)req.Region)!;
                if (bar.IsMemory(req.Offset, req.Count)) { bar.Memory!.Span.Slice((int)req.Offset, (int)req.Count).CopyTo(data); }
                else if (bar.ReadHandler is not null) { bar.ReadHandler(req.Offset, data); }
                else { throw VfioUserCommandException.Invalid(C, "the access straddles memory and registers"); }
            }
            return new CommandResult(reply);
        }

        private CommandResult RegionWrite(byte[] body)
        {
            const Command C = Command.RegionWrite;
            var req = RegionAccess.Read(body, C);
            if ((ulong)body.Length != RegionAccess.Length + (ulong)req.Count) { throw VfioUserCommandException.Invalid(C, $"count {req.Count} does not match the {body.Length - RegionAccess.Length} data bytes sent"); }
            CheckAccess(req, C);
            var data = body.AsSpan(RegionAccess.Length);
            if (req.Region == PciRegion.Config) { Device.Config.Write((int)req.Offset, data); }
            else
            {
                var bar = Device.GetBar((int)req.Region)!;
                if (bar.IsMemory(req.Offset, req.Count)) { data.CopyTo(bar.Memory!.Span.Slice((int)req.Offset, (int)req.Count)); }
                else if (bar.WriteHandler is not null) { bar.WriteHandler(req.Offset, data); }
                else { throw VfioUserCommandException.Invalid(C, "the access straddles memory and registers"); }
            }
            var reply = new byte[RegionAccess.Length];
            req.Write(reply);
            return new CommandResult(reply);
        }

        private void CheckAccess(RegionAccess req, Command c)
        {
            if (req.Count == 0 || req.Count > (uint)_server._options.MaxDataTransferSize)
            {
                throw VfioUserCommandException.Invalid(c, $"count {req.Count} is outside 1..{_server._options.MaxDataTransferSize}");
            }
            var (_, size, _) = DescribeRegion(req.Region);
            if (req.Region == PciRegion.Rom || req.Region == PciRegion.Vga || size == 0)
            {
                throw VfioUserCommandException.Invalid(c, $"region {req.Region} is not implemented");
            }
            if (req.Offset > size || req.Count > size - req.Offset)
            {
                throw VfioUserCommandException.Invalid(c, $"[0x{req.Offset:x}, +{req.Count}) is outside region {req.Region} (0x{size:x} bytes)");
            }
        }

        private CommandResult DeviceReset()
        {
            Device.Reset();
            lock (_irqLock) { _intxMasked = false; }
            return CommandResult.Empty;
        }

        // ---- DMA ----

        private CommandResult DmaMap(ReceivedMessage m)
        {
            const Command C = Command.DmaMap;
            var req = DmaMapRequest.Read(m.Body);
            if (req.Size == 0 || req.Address + req.Size < req.Address) { throw VfioUserCommandException.Invalid(C, $"range {req.Address:x}+{req.Size:x} is empty or wraps"); }
            if ((req.Flags & ~(DmaMapFlags.Read | DmaMapFlags.Write)) != 0 || req.Flags == DmaMapFlags.None)
            {
                throw VfioUserCommandException.Invalid(C, $"flags 0x{(uint)req.Flags:x}: READ and/or WRITE, nothing else");
            }
            if (m.Fds.Count > 1) { throw VfioUserCommandException.Invalid(C, $"{m.Fds.Count} descriptors; one at most"); }
            lock (_dmaLock)
            {
                if (_mappings.Count >= _server._options.MaxDmaMaps) { throw new VfioUserCommandException(C, Errno.ENOSPC, "too many DMA mappings"); }
                foreach (var existing in _mappings)
                {
                    if (req.Address < existing.Address + existing.Size && existing.Address < req.Address + req.Size)
                    {
                        throw new VfioUserCommandException(C, Errno.EEXIST, $"range 0x{req.Address:x}+0x{req.Size:x} overlaps a mapping at 0x{existing.Address:x}");
                    }
                }
                var memory = m.Fds.Count == 1 ? MapClientMemory(m.Fds[0], req) : null;
                _mappings.Add(new DmaMapping(req.Address, req.Size, req.Flags, memory));
            }
            return CommandResult.Empty;
        }

        private static SharedMapping MapClientMemory(SafeFdHandle fd, DmaMapRequest req)
        {
            const Command C = Command.DmaMap;
            // The file must hold the whole range now: touching a page past its end would raise SIGBUS in the server.
            if (!SharedMapping.TryGetFileLength(fd, out long end) || req.Offset + req.Size < req.Offset || (ulong)end < req.Offset + req.Size)
            {
                throw VfioUserCommandException.Invalid(C, $"the descriptor is not a file of at least {req.Offset}+{req.Size} bytes");
            }
            if (req.Size > nuint.MaxValue || (req.Offset & (ulong)(Environment.SystemPageSize - 1)) != 0)
            {
                throw VfioUserCommandException.Invalid(C, "the file offset must be page-aligned");
            }
            var access = ((req.Flags & DmaMapFlags.Read) != 0 ? MappingAccess.Read : 0) | ((req.Flags & DmaMapFlags.Write) != 0 ? MappingAccess.Write : 0);
            try
            {
                return SharedMapping.Map(fd, req.Offset, req.Size, access);
            }
            catch (VfioException e) when (e.ErrorNumber != 0)
            {
                throw new VfioUserCommandException(C, e.ErrorNumber, $"mmap of the client's memory failed: {Errno.Describe(e.ErrorNumber)}");
            }
        }

        private CommandResult DmaUnmap(byte[] body)
        {
            const Command C = Command.DmaUnmap;
            var req = DmaUnmapRequest.Read(body);
            if ((req.Flags & ~DmaUnmapRequest.UnmapAll) != 0) { throw new VfioUserCommandException(C, Errno.EOPNOTSUPP, $"flags 0x{req.Flags:x} (dirty bitmaps are not supported)"); }
            lock (_dmaLock)
            {
                if (req.Flags == DmaUnmapRequest.UnmapAll)
                {
                    if (req.Address != 0 || req.Size != 0) { throw VfioUserCommandException.Invalid(C, "UNMAP_ALL takes address 0 and size 0"); }
                    foreach (var m in _mappings) { m.Dispose(); }
                    _mappings.Clear();
                }
                else
                {
                    int i = _mappings.FindIndex(m => m.Address == req.Address && m.Size == req.Size);
                    if (i < 0) { throw VfioUserCommandException.Invalid(C, $"no mapping at 0x{req.Address:x}+0x{req.Size:x}"); }
                    _mappings[i].Dispose();
                    _mappings.RemoveAt(i);
                }
            }
            var reply = new byte[DmaUnmapRequest.Length];
            req.Write(reply);
            return new CommandResult(reply);
        }

        public void ReadDma(DmaAddress address, Span<byte> destination) => Dma(address.Value, destination, default, write: false);

        // No copy of the source: the memfd path copies straight into the mapping, the message path into the message body.
        public void WriteDma(DmaAddress address, ReadOnlySpan<byte> source) => Dma(address.Value, default, source, write: true);

        private unsafe void Dma(ulong address, Span<byte> readInto, ReadOnlySpan<byte> writeFrom, bool write)
        {
            int length = write ? writeFrom.Length : readInto.Length;
            int done = 0;
            while (done < length)
            {
                ulong at = address + (ulong)done;
                DmaMapping? m;
                int chunk;
                lock (_dmaLock)
                {
                    m = _mappings.Find(x => at >= x.Address && at - x.Address < x.Size);
                    if (m is null || (m.Flags & (write ? DmaMapFlags.Write : DmaMapFlags.Read)) == 0)
                    {
                        throw new VfioException($"device DMA {(write ? "write" : "read")} at 0x{at:x}: the client mapped no {(write ? "writable" : "readable")} memory there", null, Errno.EFAULT, null);
                    }
                    chunk = (int)Math.Min((ulong)(length - done), m.Size - (at - m.Address));
                    if (m.Pointer != 0)
                    {
                        // SAFETY: [Pointer, +Size) is our mmap of the client's file, checked to be that long when mapped;
                        // the lock keeps DMA_UNMAP from unmapping it during the copy.
                        var mem = new Span<byte>((byte*)m.Pointer + (at - m.Address), chunk);
                        if (write) { writeFrom.Slice(done, chunk).CopyTo(mem); } else { mem.CopyTo(readInto.Slice(done, chunk)); }
                        done += chunk;
                        continue;
                    }
                }
                // Memory mapped without a descriptor: ask the client, in pieces it accepts.
                // Within what the client accepts in a DMA_WRITE and what this server accepts in a DMA_READ reply.
                long limit = Math.Min(_client?.MaxDataTransferSize ?? VersionCapabilities.DefaultMaxDataTransferSize, _server._options.MaxDataTransferSize);
                chunk = (int)Math.Min(chunk, Math.Max(1, limit));
                if (write)
                {
                    var body = new byte[DmaAccess.Length + chunk];
                    new DmaAccess(at, (ulong)chunk).Write(body);
                    writeFrom.Slice(done, chunk).CopyTo(body.AsSpan(DmaAccess.Length));
                    using var reply = _peer.Request(Command.DmaWrite, body);
                }
                else
                {
                    var body = new byte[DmaAccess.Length];
                    new DmaAccess(at, (ulong)chunk).Write(body);
                    using var reply = _peer.Request(Command.DmaRead, body);
                    if (reply.Body.Length != DmaAccess.Length + chunk || DmaAccess.Read(reply.Body, Command.DmaRead) != new DmaAccess(at, (ulong)chunk))
                    {
                        throw new VfioException($"device DMA read at 0x{at:x}: the client's reply does not match the request", null, Errno.EIO, null);
                    }
                    reply.Body.AsSpan(DmaAccess.Length).CopyTo(readInto.Slice(done, chunk));
                }
                done += chunk;
            }
        }

        // ---- interrupts ----

        public bool IsInterruptWired(IrqIndex index, int vector)
        {
            lock (_irqLock)
            {
                return (uint)index < IrqIndexCount && (uint)vector < (uint)_eventfds[(int)index].Length && _eventfds[(int)index][vector] is not null;
            }
        }

        public bool SignalInterrupt(IrqIndex index, int vector)
        {
            lock (_irqLock)
            {
                if (!IsInterruptWired(index, vector)) { return false; }
                if (index == IrqIndex.Intx)
                {
                    if (_intxMasked || (Device.Config.Command & PciCommand.IntxDisable) != 0) { return false; }
                    _intxMasked = true; // auto-masked until the client unmasks, as vfio-pci does for level-triggered INTx
                }
                return EventFd.TrySignal(_eventfds[(int)index][vector]!);
            }
        }
    }

    /// <summary>A range of client memory: mmap'd from its descriptor (Memory, Pointer != 0) or reachable only by message.</summary>
    private sealed record DmaMapping(ulong Address, ulong Size, DmaMapFlags Flags, SharedMapping? Memory) : IDisposable
    {
        public nint Pointer => Memory?.Pointer ?? 0;

        public void Dispose() => Memory?.Dispose();
    }
}
