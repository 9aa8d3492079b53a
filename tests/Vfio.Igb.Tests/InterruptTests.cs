using Vfio.Net;

namespace Vfio.Igb.Tests;

/// <summary>
/// MSI-X completion against the in-memory 82576 (<see cref="FakeIgb"/>, which routes write-backs and link changes
/// through IVAR to its vectors, §7.3): what the driver programs and in which order, a receiver that sleeps and wakes,
/// too few vectors, the vectors' lifetime across reset, close and release, and wake-ups that bring nothing.
/// </summary>
public sealed class InterruptTests
{
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(10);

    private static IgbOptions Options(int pairs = 1, IgbCompletionMode mode = IgbCompletionMode.Interrupt, int ring = 64) =>
        new() { QueuePairs = pairs, RingSize = ring, LinkTimeout = TimeSpan.Zero, CompletionMode = mode, InterruptThrottle = TimeSpan.FromMicroseconds(100) };

    private static byte[] FrameFor(IgbDevice igb, ushort port) => Frames.Udp(igb.MacAddress.GetAddressBytes(), "169.254.0.1", "169.254.0.2", port, 7);

    /// <summary>Spins until <paramref name="condition"/> holds, failing the test after <see cref="s_patience"/>.</summary>
    private static void Eventually(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < s_patience, $"timed out waiting until {what}");
            Thread.Sleep(1);
        }
    }

    [Fact]
    public void Msix_mode_programs_gpie_then_ivar_eitr_auto_clear_and_mask_and_unmasks_every_vector_last()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(pairs: 3));
        var set = Assert.Single(fake.InterruptSets);
        Assert.Equal(4, set.Count);   // three queue pairs and the link

        int reset = fake.Writes.FindLastIndex(w => w.Offset == IgbReg.Ctrl && (w.Value & IgbCtrl.Reset) != 0);
        int tctl = fake.FirstWrite(IgbReg.Tctl, v => (v & IgbTctl.Enable) != 0);
        int gpie = fake.FirstWrite(IgbReg.Gpie);
        int ivar0 = fake.FirstWrite(IgbReg.Ivar(0));
        int misc = fake.FirstWrite(IgbReg.IvarMisc);
        int eitr0 = fake.FirstWrite(IgbReg.Eitr(0));
        int eiac = fake.FirstWrite(IgbReg.Eiac);
        int eiam = fake.FirstWrite(IgbReg.Eiam);
        int ims = fake.FirstWrite(IgbReg.Ims);
        int eims = fake.FirstWrite(IgbReg.Eims);
        Assert.True(reset < set.EnabledAtWrite && set.EnabledAtWrite <= gpie, "the vectors are enabled in VFIO after the reset, before the device is told to use them");
        Assert.True(tctl < gpie, "interrupts come once the rings run");
        Assert.True(gpie < ivar0 && ivar0 < misc && misc < eitr0 && eitr0 < eiac && eiac < eiam && eiam < ims && ims < eims,
            $"order GPIE {gpie}, IVAR0 {ivar0}, IVAR_MISC {misc}, EITR0 {eitr0}, EIAC {eiac}, EIAM {eiam}, IMS {ims}, EIMS {eims}");

        Assert.Equal(IgbGpie.NonSelectiveClearOnRead | IgbGpie.MultipleMsix | IgbGpie.AutoMaskEnable | IgbGpie.PbaSupport, fake[IgbReg.Gpie]);
        Assert.Equal(0x0000_8080u, fake[IgbReg.Ivar(0)]);   // RX 0 and TX 0 -> vector 0, valid
        Assert.Equal(0x0000_8181u, fake[IgbReg.Ivar(1)]);
        Assert.Equal(0x0000_8282u, fake[IgbReg.Ivar(2)]);
        for (int n = 3; n < 8; n++) { Assert.Equal(0u, fake[IgbReg.Ivar(n)]); }
        Assert.Equal(0x8300u, fake[IgbReg.IvarMisc]);          // other causes -> vector 3, valid
        for (int q = 0; q < 3; q++) { Assert.Equal(100u << 2, fake[IgbReg.Eitr(q)]); }
        Assert.Equal(0u, fake[IgbReg.Eitr(3)]);
        Assert.Equal(0xFu, fake[IgbReg.Eiac]);
        Assert.Equal(0xFu, fake[IgbReg.Eiam]);
        Assert.Equal(IgbIcr.LinkStatusChange, fake[IgbReg.Ims]);
        Assert.Equal(0xFu, fake[IgbReg.Eims]);
    }

    [Fact]
    public void Queues_from_eight_up_use_the_upper_half_of_their_ivar_register()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(pairs: 9, ring: 8));
        Assert.Equal(0x8888_8080u, fake[IgbReg.Ivar(0)]);   // queues 0 (bits 15:0) and 8 (bits 31:16)
        Assert.Equal(0x0000_8181u, fake[IgbReg.Ivar(1)]);
        Assert.Equal(0x8900u, fake[IgbReg.IvarMisc]);
        Assert.Equal(0x3FFu, fake[IgbReg.Eims]);
    }

    [Fact]
    public void Polling_mode_enables_no_vector_and_has_no_wait()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(mode: IgbCompletionMode.Polled));
        Assert.Empty(fake.InterruptSets);
        Assert.False(fake.RegisterWritten(IgbReg.Gpie));
        Assert.False(fake.RegisterWritten(IgbReg.Eims));
        Assert.Throws<InvalidOperationException>(() => igb.WaitForReceive(0, TimeSpan.Zero));
    }

    [Fact]
    public void Too_few_vectors_throw_the_named_exception_before_the_device_is_touched()
    {
        var fake = new FakeIgb { MsixVectors = 2 };
        var e = Assert.Throws<IgbInterruptVectorsException>(() => IgbDevice.Open(fake, Options(pairs: 2)));
        Assert.Equal(3, e.Required);
        Assert.Equal(2, e.Available);
        Assert.Contains("3 vector", e.Message);
        Assert.Empty(fake.Writes);
        Assert.Empty(fake.InterruptSets);
        // One pair fits in two vectors.
        using var igb = IgbDevice.Open(fake, Options(pairs: 1));
        Assert.Equal(2, Assert.Single(fake.InterruptSets).Count);
    }

    [Fact]
    public void A_throttle_the_eitr_field_cannot_hold_is_refused()
    {
        var options = Options() with { InterruptThrottle = TimeSpan.FromMilliseconds(9) };
        Assert.Throws<ArgumentOutOfRangeException>(() => IgbDevice.Open(new FakeIgb(), options));
    }

    [Fact]
    public void A_receiver_sleeping_in_interrupt_mode_wakes_when_frames_arrive_and_gets_them_all()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        const int Count = 300;   // several rings' worth: the vector fires and is re-armed many times
        int received = 0, timeouts = 0;
        var seen = new HashSet<int>();
        Exception? failure = null;
        var receiver = new Thread(() =>
        {
            try
            {
                var rx = new PacketBuffer[16];
                while (received < Count)
                {
                    if (!igb.WaitForReceive(0, s_patience)) { timeouts++; return; }
                    int n = igb.Receive(rx);
                    for (int i = 0; i < n; i++)
                    {
                        seen.Add(System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(rx[i].Data[34..]));
                        rx[i].Free();
                    }
                    received += n;
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        }) { IsBackground = true };
        receiver.Start();
        var vector = fake.Msix!.Vector(0);
        Eventually(() => vector.HasWaiter, "the receiver sleeps on vector 0");
        for (int i = 0; i < Count; i++)
        {
            var frame = FrameFor(igb, (ushort)i);
            Eventually(() => fake.Deliver(frame), $"frame {i} finds a receive descriptor");
            if (i % 50 == 49) { Eventually(() => vector.HasWaiter || received == i + 1, "the receiver catches up"); }
        }
        Assert.True(receiver.Join(s_patience), $"the receiver got {received} of {Count}");
        Assert.Null(failure);
        Assert.Equal(0, timeouts);
        Assert.Equal(Count, received);
        Assert.Equal(Count, seen.Count);
        Assert.True(igb.InterruptWakeups > 0, "at least one wake-up came from the vector");
        Assert.True(vector.Signals > 1, $"the vector fired {vector.Signals} time(s): it was re-armed after the first");
        Assert.True(fake.Writes.Count(w => w.Offset == IgbReg.Eims && w.Value == 1) > 1, "the wait re-arms vector 0 through EIMS");
        Assert.Equal(0, igb.Stats.RxErrors);
    }

    [Fact]
    public async Task The_async_wait_completes_on_the_vector_and_honours_cancellation()
    {
        var fake = new FakeIgb();
        await using var igb = IgbDevice.Open(fake, Options(pairs: 2));
        var wait = igb.WaitForReceiveAsync(1, TestContext.Current.CancellationToken).AsTask();
        var vector = fake.Msix!.Vector(1);
        Eventually(() => vector.HasWaiter, "the async wait is pending on vector 1");
        Assert.False(wait.IsCompleted);
        Assert.True(fake.Deliver(FrameFor(igb, 1), queue: 1));
        Assert.True(await wait.WaitAsync(s_patience, TestContext.Current.CancellationToken));
        var rx = new PacketBuffer[4];
        Assert.Equal(1, igb.Receive(rx, 1));
        rx[0].Free();

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => igb.WaitForReceiveAsync(1, cts.Token).AsTask());
    }

    [Fact]
    public void Hybrid_mode_finds_a_waiting_frame_while_polling_without_arming_the_vector()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(mode: IgbCompletionMode.Hybrid));
        int eimsWrites = fake.Writes.Count(w => w.Offset == IgbReg.Eims);
        fake.Deliver(FrameFor(igb, 1));
        Assert.True(igb.WaitForReceive(0, TimeSpan.Zero));
        Assert.Equal(eimsWrites, fake.Writes.Count(w => w.Offset == IgbReg.Eims));
        var rx = new PacketBuffer[4];
        Assert.Equal(1, igb.Receive(rx));
        rx[0].Free();
        Assert.False(igb.WaitForReceive(0, TimeSpan.Zero));   // polled, armed, nothing came
    }

    [Fact]
    public void A_spurious_interrupt_with_no_descriptor_done_sends_the_receiver_back_to_sleep()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        bool? result = null;
        var receiver = new Thread(() => result = igb.WaitForReceive(0, s_patience)) { IsBackground = true };
        receiver.Start();
        var vector = fake.Msix!.Vector(0);
        Eventually(() => vector.HasWaiter, "the receiver sleeps");
        vector.Trigger();   // no cause, no write-back
        Eventually(() => igb.InterruptWakeups == 1, "the spurious signal woke the receiver");
        Eventually(() => vector.HasWaiter, "the receiver sleeps again");
        Assert.Null(result);
        Assert.True(fake.Deliver(FrameFor(igb, 9)));
        Assert.True(receiver.Join(s_patience));
        Assert.True(result);
        var rx = new PacketBuffer[4];
        Assert.Equal(1, igb.Receive(rx));
        rx[0].Free();
        Assert.Equal(0, igb.Stats.RxErrors);

        // With nothing pending a spurious signal ends a short wait empty-handed, not with a frame.
        vector.Trigger();
        Assert.False(igb.WaitForReceive(0, TimeSpan.FromMilliseconds(20)));
    }

    [Fact]
    public void A_wake_up_does_not_vouch_for_the_write_back_which_is_still_checked()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        bool? result = null;
        var receiver = new Thread(() => result = igb.WaitForReceive(0, s_patience)) { IsBackground = true };
        receiver.Start();
        Eventually(() => fake.Msix!.Vector(0).HasWaiter, "the receiver sleeps");
        // DD and EOP with a length longer than the 2 KB buffer offered, then the queue's interrupt.
        fake.WriteRxRaw(0, 0, 0, AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | (4000UL << 32));
        fake.RaiseReceive(0);
        Assert.True(receiver.Join(s_patience));
        Assert.True(result);
        Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4]));
        Assert.Throws<IgbQueueFaultedException>(() => igb.WaitForReceive(0, TimeSpan.Zero));
    }

    [Fact]
    public void Reset_closes_the_vectors_before_the_reset_and_programs_fresh_ones()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        var first = fake.Msix!;
        bool? result = null;
        var receiver = new Thread(() => result = igb.WaitForReceive(0, s_patience)) { IsBackground = true };
        receiver.Start();
        Eventually(() => first.Vector(0).HasWaiter, "the receiver sleeps");
        int before = fake.Writes.Count;

        igb.Reset();

        Assert.True(receiver.Join(s_patience));
        Assert.False(result);   // woken by the release, told to look again
        Assert.True(first.IsDisposed);
        int reset = fake.Writes.FindIndex(before, w => w.Offset == IgbReg.Ctrl && (w.Value & IgbCtrl.Reset) != 0);
        int eimc = fake.Writes.FindIndex(before, w => w.Offset == IgbReg.Eimc && w.Value == 0xFFFF_FFFF);
        Assert.True(eimc >= 0 && eimc < first.DisposedAt!.Value.Writes && first.DisposedAt.Value.Writes <= reset,
            "masked in the device, then released in VFIO, then the reset");
        var second = fake.Msix!;
        Assert.NotSame(first, second);
        Assert.Equal(2, fake.InterruptSets.Count);
        Assert.True(fake.Writes.FindIndex(reset, w => w.Offset == IgbReg.Gpie) > reset, "GPIE programmed again after the reset");
        Assert.True(fake.Writes.FindIndex(reset, w => w.Offset == IgbReg.Ivar(0) && w.Value == 0x8080) > reset, "IVAR programmed again");
        // Both vectors unmasked: the link vector once the watcher has taken the bring-up's link change.
        Eventually(() => fake[IgbReg.Eims] == 0x3u, "EIMS holds the queue and the link vector");

        // And the new vectors work.
        Assert.True(fake.Deliver(FrameFor(igb, 3)));
        Assert.True(igb.WaitForReceive(0, s_patience));
    }

    [Fact]
    public void Dispose_closes_the_vectors_before_the_rings_are_freed_and_wakes_a_sleeper_with_ObjectDisposed()
    {
        var fake = new FakeIgb();
        var igb = IgbDevice.Open(fake, Options());
        var set = fake.Msix!;
        int liveWhileOpen = fake.Memory.LiveBuffers;
        Exception? thrown = null;
        var receiver = new Thread(() =>
        {
            try { igb.WaitForReceive(0, Timeout.InfiniteTimeSpan); }
            catch (Exception e) { thrown = e; }
        }) { IsBackground = true };
        receiver.Start();
        Eventually(() => set.Vector(0).HasWaiter, "the receiver sleeps");

        igb.Dispose();

        Assert.True(receiver.Join(s_patience));
        Assert.IsType<ObjectDisposedException>(thrown);
        Assert.True(set.IsDisposed);
        Assert.Equal(liveWhileOpen, set.DisposedAt!.Value.LiveBuffers);   // rings and pool still allocated then
        Assert.True(fake.Memory.LiveBuffers < liveWhileOpen, "the rings were freed afterwards");
        Assert.Null(fake.Msix);
        Assert.Throws<ObjectDisposedException>(() => igb.WaitForReceive(0, TimeSpan.Zero));
    }

    [Fact]
    public void A_release_request_closes_the_vectors()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        var set = fake.Msix!;
        fake.RequestRelease();
        Eventually(() => set.IsDisposed, "the release closed the vectors");
        Assert.Throws<DeviceReleasedException>(() => igb.WaitForReceive(0, TimeSpan.Zero));
    }

    [Fact]
    public void A_link_change_interrupt_reports_the_new_state_and_the_vector_is_rearmed_for_the_next()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(pairs: 2));
        var changes = new System.Collections.Concurrent.ConcurrentQueue<NetLinkState>();
        igb.LinkChanged += (_, state) => changes.Enqueue(state);
        var other = fake.Msix!.Vector(2);
        // The bring-up's auto-negotiation latched ICR.LSC; it fired the vector as soon as IMS.LSC was written.
        Eventually(() => igb.LinkChanges == 1 && other.HasWaiter, "the bring-up's link change is taken and the watcher waits again");
        Eventually(() => (fake[IgbReg.Eims] & 0x4) != 0, "the other vector is unmasked again");

        fake.SetLink(false);
        Eventually(() => changes.Count == 1, "the link-down change is reported");
        Assert.False(changes.Single().IsUp);
        Assert.False(igb.IsLinkUp);
        Eventually(() => (fake[IgbReg.Eims] & 0x4) != 0, "the other vector is unmasked again");

        fake.SetLink(true);
        Eventually(() => changes.Count == 2, "the link-up change is reported");
        Assert.Equal(new NetLinkState(true, 1000, true), changes.Last());
        Assert.Equal(3, igb.LinkChanges);
        Assert.Equal(0, igb.InterruptWakeups);   // queue waits are not link wake-ups
    }

    [Fact]
    public void Link_changes_are_still_reported_after_a_reset_whose_bring_up_raised_one()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        Eventually(() => igb.LinkChanges == 1, "the first bring-up's link change is taken");
        // The reset's bring-up latches LSC again, which fires while the reset still holds the port stopped.
        igb.Reset();
        Eventually(() => igb.LinkChanges == 2, "the reset's link change is taken once the reset is over");
        var changes = new System.Collections.Concurrent.ConcurrentQueue<NetLinkState>();
        igb.LinkChanged += (_, state) => changes.Enqueue(state);
        Eventually(() => fake.Msix!.Vector(1).HasWaiter && (fake[IgbReg.Eims] & 0x2) != 0, "the new watcher waits, its vector unmasked");
        fake.SetLink(false);
        Eventually(() => changes.Count == 1, "a link change after the reset is reported");
        Assert.False(changes.Single().IsUp);
    }
}
