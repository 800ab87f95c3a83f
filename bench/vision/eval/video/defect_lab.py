#!/usr/bin/env python3
"""Defect-rule laboratory on the independent video renders (development part only).

Rectifies the card of a few frames per video from its TRUE outline (so the
defect rules are judged apart from localisation), runs a Python copy of the
detectors in `vision/src/pipeline/defects/` (lines, wear, stains; parameter
names in P map to `DefectRules`), keeps defects seen in a majority of the
frames, and reports per-kind recall and precision. It is where the rules
were prototyped and tuned, on the development part only; numbers to report
come from eval_video.py, which runs the real worker.

Usage: defect_lab.py DIR [--frames 3] [--verbose]
"""

import argparse
import collections
import json
import math
import os

import cv2
import numpy as np

KINDS = ["scratch", "crease", "stain", "corner_wear", "edge_wear"]


def rectify(frame_gray, quad):
    q = np.float32(quad)
    d = lambda a, b: float(np.hypot(*(q[a] - q[b])))
    iw = int(round((d(0, 1) + d(3, 2)) / 2))
    ih = int(round((d(0, 3) + d(1, 2)) / 2))
    dst = np.float32([[0, 0], [iw, 0], [iw, ih], [0, ih]])
    H = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(frame_gray, H, (iw, ih), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ov(a, b, e=0.02):
    return a[0]-e<b[2] and b[0]-e<a[2] and a[1]-e<b[3] and b[1]-e<a[3]
KINDS=["scratch","crease","stain","corner_wear","edge_wear"]

def lines(f, w, h, P, axis_zone):
    s=h/590.0
    k=max(int(round(15*s))|1,5)
    ker=cv2.getStructuringElement(cv2.MORPH_ELLIPSE,(k,k))
    th=f-cv2.morphologyEx(f,cv2.MORPH_OPEN,ker)
    bh=cv2.morphologyEx(f,cv2.MORPH_CLOSE,ker)-f
    out=[]
    m=int(round(P["margin"]*w))
    for resp,kind,minlen in ((th,"scratch",P["scratch_len"]),(bh,"crease",P["crease_len"])):
        bits=(resp>P["thr"]).astype(np.uint8)*255
        bits[:m]=0;bits[-m:]=0;bits[:,:m]=0;bits[:,-m:]=0
        segs=cv2.HoughLinesP(bits,1,np.pi/180,threshold=int(P["votes"]*minlen*w),minLineLength=minlen*w,maxLineGap=P["gap"]*s)
        if segs is None: continue
        for x0,y0,x1,y1 in segs.reshape(-1,4).astype(float):
            L=math.hypot(x1-x0,y1-y0); n=int(L)
            xs=np.linspace(x0,x1,n); ys=np.linspace(y0,y1,n); nx,ny=-(y1-y0)/L,(x1-x0)/L
            def samp(off, r=resp):
                xx=np.clip(np.round(xs+nx*off).astype(int),0,w-1); yy=np.clip(np.round(ys+ny*off).astype(int),0,h-1)
                return r[yy,xx]
            on=np.median(samp(0)); side=max(np.median(samp(P["side"]*s)),np.median(samp(-P["side"]*s)))
            if side > P["thin"]*on: continue
            ang=math.degrees(math.atan2(y1-y0,x1-x0))%180
            axis = min(ang, abs(ang-90), 180-ang) < P["axis_deg"]
            if axis:
                # a design line parallel to the print frame
                if ang<45 or ang>135:
                    pos=(y0+y1)/2/h
                else:
                    pos=(x0+x1)/2/w
                if pos<axis_zone or pos>1-axis_zone: continue
            out.append(dict(kind=kind,sev=L/(0.3*w),bbox=[min(x0,x1)/w,min(y0,y1)/h,max(x0,x1)/w,max(y0,y1)/h],ang=ang))
    merged=[]
    for c in sorted(out,key=lambda c:-c["sev"]):
        if any(o["kind"]==c["kind"] and ov(o["bbox"],c["bbox"],0.01) and abs(((o["ang"]-c["ang"]+90)%180)-90)<10 for o in merged): continue
        merged.append(c)
    return merged

def running_median(p, win):
    n=len(p); out=np.empty(n); hw=max(win//2,1)
    for i in range(n):
        out[i]=np.median(p[max(0,i-hw):min(n,i+hw+1)])
    return out

def wear(f, w, h, P):
    out=[]
    a=int(round(P["band0"]*w))+1; b=max(int(round(P["band1"]*w)),a+2)
    cz=int(round(P["corner_zone"]*w))
    c=int(round(P["deep0"]*w)); d=int(round(P["deep1"]*w))
    sides={"top":(f[a:b,:].mean(0),f[c:d,:].mean(0)),"bottom":(f[h-b:h-a,:].mean(0),f[h-d:h-c,:].mean(0)),
           "left":(f[:,a:b].mean(1),f[:,c:d].mean(1)),"right":(f[:,w-b:w-a].mean(1),f[:,w-d:w-c].mean(1))}
    for name,(p,q) in sides.items():
        n=len(p)
        ref=running_median(p, int(P["ref_win"]*n))
        dev=p-ref
        qdev=q-running_median(q, int(P["ref_win"]*n))
        # Wear is shallow: where the band deeper in changes the same way, something lies over the edge (a thumb).
        bad=(np.abs(dev)>P["wear_thr"]) & ~((np.abs(qdev)>P["wear_thr"]*0.5) & (np.sign(qdev)==np.sign(dev)))
        bad[:cz]=False; bad[n-cz:]=False
        # runs
        i=0
        while i<n:
            if bad[i]:
                j=i
                while j<n and bad[j]: j+=1
                if j-i>=P["wear_len"]*n:
                    if name in("top","bottom"):
                        y0=0 if name=="top" else 1-b/h
                        bb=[i/w,y0,j/w,y0+b/h]
                    else:
                        x0=0 if name=="left" else 1-b/w
                        bb=[x0,i/h,x0+b/w,j/h]
                    out.append(dict(kind="edge_wear",sev=(j-i)/(0.15*n),bbox=bb,loc=name))
                i=j
            else: i+=1
    # corners: the corner square vs the border just beside it along both sides
    r=int(round(P["corner_r"]*w)); g=a
    for name,(cx,cy) in {"top_left":(0,0),"top_right":(1,0),"bottom_right":(1,1),"bottom_left":(0,1)}.items():
        xs=slice(g,g+r) if cx==0 else slice(w-g-r,w-g)
        ys=slice(g,g+r) if cy==0 else slice(h-g-r,h-g)
        corner=np.median(f[ys,xs])
        # reference: outer band along each side, 10-20 % of the width away from the corner
        o0,o1=int(P["corner_ref0"]*w),int(P["corner_ref1"]*w)
        hx=slice(o0,o1) if cx==0 else slice(w-o1,w-o0)
        vy=slice(o0,o1) if cy==0 else slice(h-o1,h-o0)
        ref_h=np.median(f[ys, hx]); ref_v=np.median(f[vy, xs])
        d=min(abs(corner-ref_h),abs(corner-ref_v))
        if d>P["corner_thr"]:
            bb=[0 if cx==0 else 1-(g+r)/w, 0 if cy==0 else 1-(g+r)/h, (g+r)/w if cx==0 else 1, (g+r)/h if cy==0 else 1]
            out.append(dict(kind="corner_wear",sev=d/100,bbox=bb,loc=name))
    return out

def stains(f, w, h, P):
    sc=P["stain_px"]/w; small=cv2.resize(f,(int(w*sc),int(h*sc)),interpolation=cv2.INTER_AREA); sw,sh=small.shape[1],small.shape[0]
    k=int(round(P["stain_k"]*sw))|1
    ker=cv2.getStructuringElement(cv2.MORPH_ELLIPSE,(k,k))
    bh=cv2.morphologyEx(small,cv2.MORPH_CLOSE,ker)-small
    bits=(bh>P["stain_thr"]).astype(np.uint8)
    m=int(round(P["stain_margin"]*sw)); bits[:m]=0;bits[-m:]=0;bits[:,:m]=0;bits[:,-m:]=0
    n,lab,st,cen=cv2.connectedComponentsWithStats(bits,connectivity=8)
    out=[]
    for i in range(1,n):
        x,y,cw,ch,area=st[i]
        rr=math.sqrt(area/math.pi)/sw
        if rr<P["stain_rmin_quiet"] or rr>P["stain_rmax"]: continue
        if min(cw,ch)/max(cw,ch)<P["stain_round"]: continue
        fill=area/(cw*ch)
        if fill<P["stain_fill"]: continue
        # isolation: texture of the ring around it vs its depth
        pad=max(cw,ch)
        x0,y0,x1,y1=max(x-pad,0),max(y-pad,0),min(x+cw+pad,sw),min(y+ch+pad,sh)
        ring=np.ones((y1-y0,x1-x0),bool); ring[lab[y0:y1,x0:x1]==i]=False
        inside=bh[lab==i]
        depth=np.median(inside)
        busy=(bh[y0:y1,x0:x1][ring]>P["stain_thr"]*0.5).mean()
        tex=small[y0:y1,x0:x1][ring].std()
        if busy>P["stain_busy"] or tex>P["stain_tex"]*depth: continue
        # Small blotches only on a quiet surround.
        if rr<P["stain_rmin"] and tex>P["stain_tex_quiet"]*depth: continue
        out.append(dict(kind="stain",sev=area/(sw*sw)/0.01,bbox=[x/sw,y/sh,(x+cw)/sw,(y+ch)/sh]))
    return out

def detect(card,P,what=KINDS):
    h,w=card.shape; f=card.astype(np.float32)
    out=[]
    if "scratch" in what or "crease" in what: out+=lines(f,w,h,P,P["axis_zone"])
    if "edge_wear" in what or "corner_wear" in what: out+=wear(f,w,h,P)
    if "stain" in what: out+=stains(f,w,h,P)
    return [o for o in out if o["kind"] in what]

def frames_of(dirname, frames):
    seeds=sorted(int(x[:-5]) for x in os.listdir(dirname) if x.endswith(".json"))
    data=[]
    for seed in seeds:
        t=json.load(open(f"{dirname}/{seed}.json"))
        cap=cv2.VideoCapture(f"{dirname}/{seed}.avi"); n=t["frames"]
        want=[int(n*(i+1)/(frames+1)) for i in range(frames)]
        cards=[]
        for i in range(n):
            ok,fr=cap.read()
            if not ok: break
            if i in want: cards.append(rectify(cv2.cvtColor(fr,cv2.COLOR_BGR2GRAY),t["quads"][i]))
        data.append((t,cards))
    return data

def score(data,P,what=KINDS,verbose=False):
    tp=collections.Counter();fn=collections.Counter();fp=collections.Counter(); fps=[]; clean=[]
    for t,cards in data:
        dets=[detect(c,P,what) for c in cards]
        final=[]
        for d in [c for ds in dets for c in ds]:
            if any(o["kind"]==d["kind"] and ov(o["bbox"],d["bbox"],0.01) for o in final): continue
            sup=sum(any(o["kind"]==d["kind"] and ov(o["bbox"],d["bbox"],0.01) for o in ds) for ds in dets)
            if sup*2>len(dets): final.append(d)
        want_=[(x["kind"],x["bbox"]) for x in t["defects"] if x["kind"] in what]
        for k,b in want_:
            hit=any(g["kind"]==k and ov(g["bbox"],b) for g in final)
            (tp if hit else fn)[k]+=1
            if not hit and verbose: print("  FN",t["seed"],t["look"]["border"]+"/"+t["look"]["print"],k,[round(x,3) for x in b],[x.get("location") for x in t["defects"] if x["kind"]==k])
        nfp=0
        for g in final:
            if not any(k==g["kind"] and ov(b,g["bbox"]) for k,b in want_):
                fp[g["kind"]]+=1; nfp+=1; fps.append((t["seed"],t["look"]["border"]+"/"+t["look"]["print"],g))
        if not t["defects"]: clean.append(nfp)
    res={}
    for k in what:
        T=tp[k]+fn[k]; R=tp[k]+fp[k]
        res[k]=(T,tp[k]/max(T,1),R,tp[k]/max(R,1))
        print(f"{k:12} true {T:3} recall {tp[k]/max(T,1):.2f} reported {R:3} precision {tp[k]/max(R,1):.2f}")
    print("clean cards:",len(clean),"with any FP:",sum(x>0 for x in clean))
    if verbose:
        for s,l,g in fps: print("  FP",s,l,g["kind"],[round(x,2) for x in g["bbox"]],round(g["sev"],2),g.get("loc",""))
    return res

P=dict(thr=20,margin=0.03,scratch_len=0.15,crease_len=0.3,votes=0.5,gap=4,side=4,thin=0.5,axis_deg=2.0,axis_zone=0.15,
       band0=0.0,band1=0.012,deep0=0.03,deep1=0.045,corner_zone=0.07,ref_win=1.0,wear_thr=16,wear_len=0.04,
       corner_r=0.015,corner_ref0=0.10,corner_ref1=0.20,corner_thr=35,
       stain_px=160,stain_k=0.16,stain_thr=20,stain_margin=0.06,stain_rmin=0.02,stain_rmin_quiet=0.01,stain_tex_quiet=0.1,stain_rmax=0.08,stain_round=0.5,stain_fill=0.5,stain_busy=0.15,stain_tex=1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--verbose", action="store_true", help="list every false positive and miss")
    args = ap.parse_args()
    data = frames_of(args.dir, args.frames)
    print(f"{len(data)} videos, {args.frames} frames each, truth outlines")
    score(data, P, verbose=args.verbose)


if __name__ == "__main__":
    main()
