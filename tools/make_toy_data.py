"""Generate the toy shapes detection dataset (COCO json + PNG images) ahead of training.

    python tools/make_toy_data.py                       # data/toy_shapes, the configs' default
    python tools/make_toy_data.py --root /tmp/toy --seed 1 --num-train 1000

The toy configs also generate it on first use (ToyShapesDataset); configs that read the images
without annotations (UnlabeledDetDataset) need it to exist first.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description='Generate the mmkd toy shapes dataset')
    parser.add_argument('--root', default='data/toy_shapes', help='output folder (left as is if complete)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--max-objects', type=int, default=6)
    args = parser.parse_args()
    from mmkd.datasets.toy_shapes import generate_toy_shapes
    start = time.time()
    files = generate_toy_shapes(
        args.root,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        max_objects=args.max_objects)
    print(f'toy shapes ready in {time.time() - start:.1f} s: ' + ', '.join(files.values()))


if __name__ == '__main__':
    main()
